// RUN: fuse-elementwise
// %1 feeds the add directly and through the softmax: exp/mul and add/tanh/mul form two groups
// with the softmax between them (one group would be a cycle). The first group yields %1 for
// both users; the scalar 2.0 is copied into the second group and its original erased.
// CHECK: %0 = "sc.fused"(%x, %y) ({
// CHECK: "sc.exp"
// CHECK-NEXT: "sc.mul"
// CHECK-NOT: "sc.softmax"
// CHECK: "sc.yield"
// CHECK: "sc.softmax"(%0)
// CHECK-NEXT: "sc.fused"(%0, %{{[0-9]+}}) ({
// CHECK: "sc.constant"() {value = dense<2.0> : tensor<f32>}
// CHECK-NEXT: "sc.add"
// CHECK-NEXT: "sc.tanh"
// CHECK-NEXT: "sc.mul"
// CHECK-NEXT: "sc.yield"
// CHECK-NOT: "sc.constant"
// CHECK: "func.return"
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 8 : i64], sc.name = "x"}, {sc.dims = ["tokens", 8 : i64], sc.name = "y"}], function_type = (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x8xf32>, %y: tensor<?x8xf32>):
    %0 = "sc.exp"(%x) : (tensor<?x8xf32>) -> tensor<?x8xf32>
    %1 = "sc.mul"(%0, %y) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
    %2 = "sc.softmax"(%1) {axis = -1 : i64} : (tensor<?x8xf32>) -> tensor<?x8xf32>
    %3 = "sc.add"(%1, %2) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
    %4 = "sc.tanh"(%3) : (tensor<?x8xf32>) -> tensor<?x8xf32>
    %5 = "sc.constant"() {value = dense<2.0> : tensor<f32>} : () -> tensor<f32>
    %6 = "sc.mul"(%4, %5) : (tensor<?x8xf32>, tensor<f32>) -> tensor<?x8xf32>
    "func.return"(%6) : (tensor<?x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
