// RUN: fuse-router
// Mixtral's router (norm_topk_prob): softmax over the experts, the top 2, divided by their sum.
// The four ops become one sc.softmax_topk with normalize; its two results replace the division's
// and topk's ids.
// CHECK: %0 = "sc.linear"(%x, %gate.weight)
// CHECK-NEXT: %1:2 = "sc.softmax_topk"(%0) {k = 2 : i64, normalize = true} : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi64>)
// CHECK-NEXT: "func.return"(%1#0, %1#1)
// CHECK-NOT: sc.softmax"
// CHECK-NOT: sc.topk"
// CHECK-NOT: sc.sum"
// CHECK-NOT: sc.div"
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 16 : i64], sc.name = "x"}], function_type = (tensor<?x16xf32>) -> (tensor<?x2xf32>, tensor<?x2xi64>), sym_name = "main"}> ({
  ^bb0(%x: tensor<?x16xf32>):
    %gate.weight = "sc.param"() {name = "gate.weight"} : () -> tensor<8x16xf32>
    %0 = "sc.linear"(%x, %gate.weight) : (tensor<?x16xf32>, tensor<8x16xf32>) -> tensor<?x8xf32>
    %1 = "sc.softmax"(%0) {axis = -1 : i64} : (tensor<?x8xf32>) -> tensor<?x8xf32>
    %2:2 = "sc.topk"(%1) {axis = -1 : i64, k = 2 : i64, largest = true} : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi64>)
    %3 = "sc.sum"(%2#0) {axes = array<i64: -1>, keepdims = true} : (tensor<?x2xf32>) -> tensor<?x1xf32>
    %4 = "sc.div"(%2#0, %3) : (tensor<?x2xf32>, tensor<?x1xf32>) -> tensor<?x2xf32>
    "func.return"(%4, %2#1) : (tensor<?x2xf32>, tensor<?x2xi64>) -> ()
  }) : () -> ()
}) : () -> ()
