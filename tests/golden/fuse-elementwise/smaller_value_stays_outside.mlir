// RUN: fuse-elementwise
// exp(v) is [tokens, 1] and also needed by the softmax: it cannot be yielded by a group whose
// iteration space is [tokens, 8], so it stays outside and comes in as an input.
// CHECK: %0 = "sc.exp"(%v)
// CHECK-NEXT: "sc.fused"(%0, %x) ({
// CHECK-NOT: "sc.exp"
// CHECK: "sc.mul"
// CHECK-NEXT: "sc.add"
// CHECK-NEXT: "sc.tanh"
// CHECK-NEXT: "sc.yield"({{.*}}) : (tensor<?x8xf32>) -> ()
// CHECK: "sc.softmax"(%0)
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 1 : i64], sc.name = "v"}, {sc.dims = ["tokens", 8 : i64], sc.name = "x"}], function_type = (tensor<?x1xf32>, tensor<?x8xf32>) -> (tensor<?x8xf32>, tensor<?x1xf32>), sym_name = "main"}> ({
  ^bb0(%v: tensor<?x1xf32>, %x: tensor<?x8xf32>):
    %0 = "sc.exp"(%v) : (tensor<?x1xf32>) -> tensor<?x1xf32>
    %1 = "sc.mul"(%0, %x) : (tensor<?x1xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
    %2 = "sc.constant"() {value = dense<1.0> : tensor<f32>} : () -> tensor<f32>
    %3 = "sc.add"(%1, %2) : (tensor<?x8xf32>, tensor<f32>) -> tensor<?x8xf32>
    %4 = "sc.tanh"(%3) : (tensor<?x8xf32>) -> tensor<?x8xf32>
    %5 = "sc.softmax"(%0) {axis = 0 : i64} : (tensor<?x1xf32>) -> tensor<?x1xf32>
    "func.return"(%4, %5) : (tensor<?x8xf32>, tensor<?x1xf32>) -> ()
  }) : () -> ()
}) : () -> ()
