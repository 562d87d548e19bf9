// RUN: sparse-activation
// A hand-written dense MoE: the mask is sum(one_hot(ids) * weights[:, :, None], 1), the experts
// are gelu MLPs written x @ W.T (transpose + matmul), and a shared term starts the sum. The
// stacks read the weights themselves (the transposes go), and the shared term is added to the
// combine in its place in the sum.
// CHECK: %4 = "sc.matmul"(%x, %3)
// CHECK-NOT: "sc.one_hot"
// CHECK: %5:2 = "sc.moe_dispatch"(%2#1) {num_experts = 2 : i64}
// CHECK-NEXT: %6 = "sc.moe_permute"(%x, %5#0) {top_k = 1 : i64}
// CHECK-NEXT: %fc1 = "sc.stack"(%fc1.0, %fc1.1) {axis = 0 : i64} : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<2x3x4xf32>
// CHECK-NEXT: %7 = "sc.grouped_matmul"(%6, %fc1, %5#1)
// CHECK-NEXT: %8 = "sc.gelu"(%7)
// CHECK-NEXT: %fc2 = "sc.stack"(%fc2.0, %fc2.1)
// CHECK-NEXT: %9 = "sc.grouped_matmul"(%8, %fc2, %5#1)
// CHECK-NEXT: %10 = "sc.moe_combine"(%9, %5#0, %2#0)
// CHECK-NEXT: %11 = "sc.add"(%4, %10)
// CHECK-NEXT: "func.return"(%11)
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 4 : i64], sc.name = "x"}], function_type = (tensor<?x4xf32>) -> tensor<?x4xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x4xf32>):
    %router = "sc.param"() {name = "router"} : () -> tensor<2x4xf32>
    %0 = "sc.linear"(%x, %router) : (tensor<?x4xf32>, tensor<2x4xf32>) -> tensor<?x2xf32>
    %1 = "sc.softmax"(%0) {axis = -1 : i64} : (tensor<?x2xf32>) -> tensor<?x2xf32>
    %2:2 = "sc.topk"(%1) {axis = -1 : i64, k = 1 : i64, largest = true} : (tensor<?x2xf32>) -> (tensor<?x1xf32>, tensor<?x1xi64>)
    %3 = "sc.one_hot"(%2#1) {depth = 2 : i64, dtype = f32} : (tensor<?x1xi64>) -> tensor<?x1x2xf32>
    %4 = "sc.expand_dims"(%2#0) {axes = array<i64: 2>} : (tensor<?x1xf32>) -> tensor<?x1x1xf32>
    %5 = "sc.mul"(%3, %4) : (tensor<?x1x2xf32>, tensor<?x1x1xf32>) -> tensor<?x1x2xf32>
    %6 = "sc.sum"(%5) {axes = array<i64: 1>, keepdims = false} : (tensor<?x1x2xf32>) -> tensor<?x2xf32>
    %shared = "sc.param"() {name = "shared"} : () -> tensor<4x4xf32>
    %7 = "sc.transpose"(%shared) {perm = array<i64: 1, 0>} : (tensor<4x4xf32>) -> tensor<4x4xf32>
    %8 = "sc.matmul"(%x, %7) {transpose_a = false, transpose_b = false} : (tensor<?x4xf32>, tensor<4x4xf32>) -> tensor<?x4xf32>
    %fc1.0 = "sc.param"() {name = "fc1.0"} : () -> tensor<3x4xf32>
    %9 = "sc.transpose"(%fc1.0) {perm = array<i64: 1, 0>} : (tensor<3x4xf32>) -> tensor<4x3xf32>
    %10 = "sc.matmul"(%x, %9) {transpose_a = false, transpose_b = false} : (tensor<?x4xf32>, tensor<4x3xf32>) -> tensor<?x3xf32>
    %11 = "sc.gelu"(%10) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %fc2.0 = "sc.param"() {name = "fc2.0"} : () -> tensor<4x3xf32>
    %12 = "sc.transpose"(%fc2.0) {perm = array<i64: 1, 0>} : (tensor<4x3xf32>) -> tensor<3x4xf32>
    %13 = "sc.matmul"(%11, %12) {transpose_a = false, transpose_b = false} : (tensor<?x3xf32>, tensor<3x4xf32>) -> tensor<?x4xf32>
    %14 = "sc.slice"(%6) {axis = 1 : i64, step = 1 : i64, stop = 1 : i64} : (tensor<?x2xf32>) -> tensor<?x1xf32>
    %15 = "sc.mul"(%13, %14) : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %16 = "sc.add"(%8, %15) : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
    %fc1.1 = "sc.param"() {name = "fc1.1"} : () -> tensor<3x4xf32>
    %17 = "sc.transpose"(%fc1.1) {perm = array<i64: 1, 0>} : (tensor<3x4xf32>) -> tensor<4x3xf32>
    %18 = "sc.matmul"(%x, %17) {transpose_a = false, transpose_b = false} : (tensor<?x4xf32>, tensor<4x3xf32>) -> tensor<?x3xf32>
    %19 = "sc.gelu"(%18) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %fc2.1 = "sc.param"() {name = "fc2.1"} : () -> tensor<4x3xf32>
    %20 = "sc.transpose"(%fc2.1) {perm = array<i64: 1, 0>} : (tensor<4x3xf32>) -> tensor<3x4xf32>
    %21 = "sc.matmul"(%19, %20) {transpose_a = false, transpose_b = false} : (tensor<?x3xf32>, tensor<3x4xf32>) -> tensor<?x4xf32>
    %22 = "sc.slice"(%6) {axis = 1 : i64, start = 1 : i64, step = 1 : i64} : (tensor<?x2xf32>) -> tensor<?x1xf32>
    %23 = "sc.mul"(%21, %22) : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %24 = "sc.add"(%16, %23) : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
    "func.return"(%24) : (tensor<?x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
