// RUN: sparse-activation
// The Hugging Face (Mixtral) expert loop: expert_mask = one_hot(ids, E).permute(2, 1, 0);
// idx, top_x = nonzero(expert_mask[e]); out.index_add(top_x, expert_e(x[top_x]) * w[top_x, idx, None]).
// It becomes the dispatch chain; the nonzero/take/index_add ops and the per-expert linears go.
// CHECK-NOT: "sc.nonzero"
// CHECK: %3:2 = "sc.moe_dispatch"(%2#1) {num_experts = 2 : i64}
// CHECK-NEXT: %4 = "sc.moe_permute"(%x, %3#0) {top_k = 2 : i64}
// CHECK-NEXT: %experts.gate = "sc.stack"(%experts.0.gate, %experts.1.gate) {axis = 0 : i64}
// CHECK-NEXT: %5 = "sc.grouped_matmul"(%4, %experts.gate, %3#1)
// CHECK-NEXT: %6 = "sc.silu"(%5)
// CHECK-NEXT: %experts.up = "sc.stack"(%experts.0.up, %experts.1.up) {axis = 0 : i64}
// CHECK-NEXT: %7 = "sc.grouped_matmul"(%4, %experts.up, %3#1)
// CHECK-NEXT: %8 = "sc.mul"(%6, %7)
// CHECK-NEXT: %experts.down = "sc.stack"(%experts.0.down, %experts.1.down) {axis = 0 : i64}
// CHECK-NEXT: %9 = "sc.grouped_matmul"(%8, %experts.down, %3#1)
// CHECK-NEXT: %10 = "sc.moe_combine"(%9, %3#0, %2#0)
// CHECK-NEXT: "func.return"(%10)
// CHECK-NOT: "sc.index_add"
// CHECK-NOT: "sc.take"
// CHECK-NOT: "sc.linear"
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 4 : i64], sc.name = "x"}], function_type = (tensor<?x4xf32>) -> tensor<?x4xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x4xf32>):
    %router = "sc.param"() {name = "router"} : () -> tensor<2x4xf32>
    %0 = "sc.linear"(%x, %router) : (tensor<?x4xf32>, tensor<2x4xf32>) -> tensor<?x2xf32>
    %1 = "sc.softmax"(%0) {axis = -1 : i64} : (tensor<?x2xf32>) -> tensor<?x2xf32>
    %2:2 = "sc.topk"(%1) {axis = -1 : i64, k = 2 : i64, largest = true} : (tensor<?x2xf32>) -> (tensor<?x2xf32>, tensor<?x2xi64>)
    %3 = "sc.constant"() {value = dense<0.0> : tensor<f32>} : () -> tensor<f32>
    %4 = "sc.broadcast_to"(%3) {shape = ["tokens", 4 : i64]} : (tensor<f32>) -> tensor<?x4xf32>
    %5 = "sc.one_hot"(%2#1) {depth = 2 : i64, dtype = i64} : (tensor<?x2xi64>) -> tensor<?x2x2xi64>
    %6 = "sc.transpose"(%5) {perm = array<i64: 2, 1, 0>} : (tensor<?x2x2xi64>) -> tensor<2x2x?xi64>
    %7 = "sc.slice"(%6) {axis = 0 : i64, step = 1 : i64, stop = 1 : i64} : (tensor<2x2x?xi64>) -> tensor<1x2x?xi64>
    %8 = "sc.squeeze"(%7) {axes = array<i64: 0>} : (tensor<1x2x?xi64>) -> tensor<2x?xi64>
    %9:2 = "sc.nonzero"(%8) {size = "nnz0"} : (tensor<2x?xi64>) -> (tensor<?xi64>, tensor<?xi64>)
    %10 = "sc.take"(%x, %9#1) {axis = 0 : i64} : (tensor<?x4xf32>, tensor<?xi64>) -> tensor<?x4xf32>
    %experts.0.gate = "sc.param"() {name = "experts.0.gate"} : () -> tensor<3x4xf32>
    %11 = "sc.linear"(%10, %experts.0.gate) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %12 = "sc.silu"(%11) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %experts.0.up = "sc.param"() {name = "experts.0.up"} : () -> tensor<3x4xf32>
    %13 = "sc.linear"(%10, %experts.0.up) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %14 = "sc.mul"(%12, %13) : (tensor<?x3xf32>, tensor<?x3xf32>) -> tensor<?x3xf32>
    %experts.0.down = "sc.param"() {name = "experts.0.down"} : () -> tensor<4x3xf32>
    %15 = "sc.linear"(%14, %experts.0.down) : (tensor<?x3xf32>, tensor<4x3xf32>) -> tensor<?x4xf32>
    %16 = "sc.expand_dims"(%2#0) {axes = array<i64: 2>} : (tensor<?x2xf32>) -> tensor<?x2x1xf32>
    %17 = "sc.constant"() {value = dense<2> : tensor<i64>} : () -> tensor<i64>
    %18 = "sc.mul"(%9#1, %17) : (tensor<?xi64>, tensor<i64>) -> tensor<?xi64>
    %19 = "sc.add"(%18, %9#0) : (tensor<?xi64>, tensor<?xi64>) -> tensor<?xi64>
    %20 = "sc.reshape"(%16) {shape = ["2*tokens", 1 : i64]} : (tensor<?x2x1xf32>) -> tensor<?x1xf32>
    %21 = "sc.take"(%20, %19) {axis = 0 : i64} : (tensor<?x1xf32>, tensor<?xi64>) -> tensor<?x1xf32>
    %22 = "sc.mul"(%15, %21) : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %23 = "sc.index_add"(%4, %9#1, %22) {axis = 0 : i64} : (tensor<?x4xf32>, tensor<?xi64>, tensor<?x4xf32>) -> tensor<?x4xf32>
    %24 = "sc.slice"(%6) {axis = 0 : i64, start = 1 : i64, step = 1 : i64} : (tensor<2x2x?xi64>) -> tensor<1x2x?xi64>
    %25 = "sc.squeeze"(%24) {axes = array<i64: 0>} : (tensor<1x2x?xi64>) -> tensor<2x?xi64>
    %26:2 = "sc.nonzero"(%25) {size = "nnz1"} : (tensor<2x?xi64>) -> (tensor<?xi64>, tensor<?xi64>)
    %27 = "sc.take"(%x, %26#1) {axis = 0 : i64} : (tensor<?x4xf32>, tensor<?xi64>) -> tensor<?x4xf32>
    %experts.1.gate = "sc.param"() {name = "experts.1.gate"} : () -> tensor<3x4xf32>
    %28 = "sc.linear"(%27, %experts.1.gate) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %29 = "sc.silu"(%28) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %experts.1.up = "sc.param"() {name = "experts.1.up"} : () -> tensor<3x4xf32>
    %30 = "sc.linear"(%27, %experts.1.up) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %31 = "sc.mul"(%29, %30) : (tensor<?x3xf32>, tensor<?x3xf32>) -> tensor<?x3xf32>
    %experts.1.down = "sc.param"() {name = "experts.1.down"} : () -> tensor<4x3xf32>
    %32 = "sc.linear"(%31, %experts.1.down) : (tensor<?x3xf32>, tensor<4x3xf32>) -> tensor<?x4xf32>
    %33 = "sc.expand_dims"(%2#0) {axes = array<i64: 2>} : (tensor<?x2xf32>) -> tensor<?x2x1xf32>
    %34 = "sc.mul"(%26#1, %17) : (tensor<?xi64>, tensor<i64>) -> tensor<?xi64>
    %35 = "sc.add"(%34, %26#0) : (tensor<?xi64>, tensor<?xi64>) -> tensor<?xi64>
    %36 = "sc.reshape"(%33) {shape = ["2*tokens", 1 : i64]} : (tensor<?x2x1xf32>) -> tensor<?x1xf32>
    %37 = "sc.take"(%36, %35) {axis = 0 : i64} : (tensor<?x1xf32>, tensor<?xi64>) -> tensor<?x1xf32>
    %38 = "sc.mul"(%32, %37) : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %39 = "sc.index_add"(%23, %26#1, %38) {axis = 0 : i64} : (tensor<?x4xf32>, tensor<?xi64>, tensor<?x4xf32>) -> tensor<?x4xf32>
    "func.return"(%39) : (tensor<?x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
