// RUN: dce
// A chain whose end nobody uses goes away entirely, its weight read too.
// CHECK-NOT: "sc.exp"
// CHECK-NOT: "sc.param"
// CHECK: "sc.neg"(%x)
// CHECK-NEXT: "func.return"
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.name = "x"}], function_type = (tensor<4xf32>) -> tensor<4xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<4xf32>):
    %w = "sc.param"() {name = "w"} : () -> tensor<4xf32>
    %0 = "sc.add"(%x, %w) : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
    %1 = "sc.exp"(%0) : (tensor<4xf32>) -> tensor<4xf32>
    %2 = "sc.neg"(%x) : (tensor<4xf32>) -> tensor<4xf32>
    "func.return"(%2) : (tensor<4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
