// RUN: dce
// An op stays while any of its results is used (topk's values feed the result, its indices do
// not); a dead op inside an sc.fused body goes, the region keeps what it yields.
// CHECK: "sc.topk"
// CHECK: "sc.fused"
// CHECK-NOT: "sc.exp"
// CHECK: "sc.yield"
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.name = "x"}], function_type = (tensor<3x4xf32>) -> tensor<3x2xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<3x4xf32>):
    %v:2 = "sc.topk"(%x) {axis = -1 : i64, k = 2 : i64, largest = true} : (tensor<3x4xf32>) -> (tensor<3x2xf32>, tensor<3x2xi64>)
    %f = "sc.fused"(%v#0) ({
    ^bb0(%a: tensor<3x2xf32>):
      %dead = "sc.exp"(%a) : (tensor<3x2xf32>) -> tensor<3x2xf32>
      %n = "sc.neg"(%a) : (tensor<3x2xf32>) -> tensor<3x2xf32>
      %m = "sc.mul"(%n, %a) : (tensor<3x2xf32>, tensor<3x2xf32>) -> tensor<3x2xf32>
      "sc.yield"(%m) : (tensor<3x2xf32>) -> ()
    }) {kind = "elementwise"} : (tensor<3x2xf32>) -> tensor<3x2xf32>
    "func.return"(%f) : (tensor<3x2xf32>) -> ()
  }) : () -> ()
}) : () -> ()
