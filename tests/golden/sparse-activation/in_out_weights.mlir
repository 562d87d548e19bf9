// RUN: sparse-activation
// Experts written x @ W with W stored [in, out]: the weights are stacked as they are and the
// stack is transposed once to the [E, out, in] layout grouped_matmul takes.
// CHECK: %5 = "sc.stack"(%w_in.0, %w_in.1) {axis = 0 : i64} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<2x4x3xf32>
// CHECK-NEXT: %w_in = "sc.transpose"(%5) {perm = array<i64: 0, 2, 1>} : (tensor<2x4x3xf32>) -> tensor<2x3x4xf32>
// CHECK-NEXT: %6 = "sc.grouped_matmul"(%4, %w_in, %3#1)
// CHECK-NEXT: %7 = "sc.relu"(%6)
// CHECK: %10 = "sc.moe_combine"(%9, %3#0, %2#0)
// CHECK-NOT: "sc.matmul"
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 4 : i64], sc.name = "x"}], function_type = (tensor<?x4xf32>) -> tensor<?x4xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x4xf32>):
    %router = "sc.param"() {name = "router"} : () -> tensor<2x4xf32>
    %0 = "sc.linear"(%x, %router) : (tensor<?x4xf32>, tensor<2x4xf32>) -> tensor<?x2xf32>
    %1 = "sc.softmax"(%0) {axis = -1 : i64} : (tensor<?x2xf32>) -> tensor<?x2xf32>
    %2:2 = "sc.topk"(%1) {axis = -1 : i64, k = 1 : i64, largest = true} : (tensor<?x2xf32>) -> (tensor<?x1xf32>, tensor<?x1xi64>)
    %3 = "sc.constant"() {value = dense<0.0> : tensor<f32>} : () -> tensor<f32>
    %4 = "sc.broadcast_to"(%3) {shape = ["tokens", 2 : i64]} : (tensor<f32>) -> tensor<?x2xf32>
    %5 = "sc.scatter"(%4, %2#1, %2#0) {axis = -1 : i64} : (tensor<?x2xf32>, tensor<?x1xi64>, tensor<?x1xf32>) -> tensor<?x2xf32>
    %w_in.0 = "sc.param"() {name = "w_in.0"} : () -> tensor<4x3xf32>
    %6 = "sc.matmul"(%x, %w_in.0) {transpose_a = false, transpose_b = false} : (tensor<?x4xf32>, tensor<4x3xf32>) -> tensor<?x3xf32>
    %7 = "sc.relu"(%6) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %w_out.0 = "sc.param"() {name = "w_out.0"} : () -> tensor<3x4xf32>
    %8 = "sc.matmul"(%7, %w_out.0) {transpose_a = false, transpose_b = false} : (tensor<?x3xf32>, tensor<3x4xf32>) -> tensor<?x4xf32>
    %9 = "sc.slice"(%5) {axis = 1 : i64, step = 1 : i64, stop = 1 : i64} : (tensor<?x2xf32>) -> tensor<?x1xf32>
    %10 = "sc.mul"(%8, %9) : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %w_in.1 = "sc.param"() {name = "w_in.1"} : () -> tensor<4x3xf32>
    %11 = "sc.matmul"(%x, %w_in.1) {transpose_a = false, transpose_b = false} : (tensor<?x4xf32>, tensor<4x3xf32>) -> tensor<?x3xf32>
    %12 = "sc.relu"(%11) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %w_out.1 = "sc.param"() {name = "w_out.1"} : () -> tensor<3x4xf32>
    %13 = "sc.matmul"(%12, %w_out.1) {transpose_a = false, transpose_b = false} : (tensor<?x3xf32>, tensor<3x4xf32>) -> tensor<?x4xf32>
    %14 = "sc.slice"(%5) {axis = 1 : i64, start = 1 : i64, step = 1 : i64} : (tensor<?x2xf32>) -> tensor<?x1xf32>
    %15 = "sc.mul"(%13, %14) : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %16 = "sc.add"(%10, %15) : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
    "func.return"(%16) : (tensor<?x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
