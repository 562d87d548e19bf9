// RUN: sparse-activation,expert-fusion
// Per-expert masks where(ids == e, w, 0).sum(-1) of a sigmoid router; with expert-fusion after it the
// silu(gate) * up half of each SwiGLU expert is one sc.moe_gated_grouped_matmul.
// CHECK-NOT: "sc.equal"
// CHECK: %4:2 = "sc.moe_dispatch"(%2#1) {num_experts = 2 : i64}
// CHECK-NEXT: %5 = "sc.moe_permute"(%x, %4#0) {top_k = 1 : i64}
// CHECK-NEXT: %experts.gate = "sc.stack"(%experts.0.gate, %experts.1.gate)
// CHECK-NEXT: %experts.up = "sc.stack"(%experts.0.up, %experts.1.up)
// CHECK-NEXT: %6 = "sc.moe_gated_grouped_matmul"(%5, %experts.gate, %experts.up, %4#1) {activation = "silu"}
// CHECK-NEXT: %experts.down = "sc.stack"(%experts.0.down, %experts.1.down)
// CHECK-NEXT: %7 = "sc.grouped_matmul"(%6, %experts.down, %4#1)
// CHECK-NEXT: %8 = "sc.moe_combine"(%7, %4#0, %3)
// CHECK-NEXT: "func.return"(%8)
// CHECK-NOT: "sc.silu"
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 4 : i64], sc.name = "x"}], function_type = (tensor<?x4xf32>) -> tensor<?x4xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x4xf32>):
    %router = "sc.param"() {name = "router"} : () -> tensor<2x4xf32>
    %0 = "sc.linear"(%x, %router) : (tensor<?x4xf32>, tensor<2x4xf32>) -> tensor<?x2xf32>
    %1 = "sc.sigmoid"(%0) : (tensor<?x2xf32>) -> tensor<?x2xf32>
    %2:2 = "sc.topk"(%1) {axis = -1 : i64, k = 1 : i64, largest = true} : (tensor<?x2xf32>) -> (tensor<?x1xf32>, tensor<?x1xi64>)
    %3 = "sc.take_along_axis"(%1, %2#1) {axis = -1 : i64} : (tensor<?x2xf32>, tensor<?x1xi64>) -> tensor<?x1xf32>
    %4 = "sc.constant"() {value = dense<0> : tensor<i64>} : () -> tensor<i64>
    %5 = "sc.equal"(%2#1, %4) : (tensor<?x1xi64>, tensor<i64>) -> tensor<?x1xi1>
    %6 = "sc.constant"() {value = dense<0.0> : tensor<f32>} : () -> tensor<f32>
    %7 = "sc.where"(%5, %3, %6) : (tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>) -> tensor<?x1xf32>
    %8 = "sc.sum"(%7) {axes = array<i64: -1>, keepdims = true} : (tensor<?x1xf32>) -> tensor<?x1xf32>
    %experts.0.gate = "sc.param"() {name = "experts.0.gate"} : () -> tensor<3x4xf32>
    %9 = "sc.linear"(%x, %experts.0.gate) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %10 = "sc.silu"(%9) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %experts.0.up = "sc.param"() {name = "experts.0.up"} : () -> tensor<3x4xf32>
    %11 = "sc.linear"(%x, %experts.0.up) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %12 = "sc.mul"(%10, %11) : (tensor<?x3xf32>, tensor<?x3xf32>) -> tensor<?x3xf32>
    %experts.0.down = "sc.param"() {name = "experts.0.down"} : () -> tensor<4x3xf32>
    %13 = "sc.linear"(%12, %experts.0.down) : (tensor<?x3xf32>, tensor<4x3xf32>) -> tensor<?x4xf32>
    %14 = "sc.mul"(%13, %8) : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %15 = "sc.constant"() {value = dense<1> : tensor<i64>} : () -> tensor<i64>
    %16 = "sc.equal"(%2#1, %15) : (tensor<?x1xi64>, tensor<i64>) -> tensor<?x1xi1>
    %17 = "sc.where"(%16, %3, %6) : (tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>) -> tensor<?x1xf32>
    %18 = "sc.sum"(%17) {axes = array<i64: -1>, keepdims = true} : (tensor<?x1xf32>) -> tensor<?x1xf32>
    %experts.1.gate = "sc.param"() {name = "experts.1.gate"} : () -> tensor<3x4xf32>
    %19 = "sc.linear"(%x, %experts.1.gate) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %20 = "sc.silu"(%19) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %experts.1.up = "sc.param"() {name = "experts.1.up"} : () -> tensor<3x4xf32>
    %21 = "sc.linear"(%x, %experts.1.up) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %22 = "sc.mul"(%20, %21) : (tensor<?x3xf32>, tensor<?x3xf32>) -> tensor<?x3xf32>
    %experts.1.down = "sc.param"() {name = "experts.1.down"} : () -> tensor<4x3xf32>
    %23 = "sc.linear"(%22, %experts.1.down) : (tensor<?x3xf32>, tensor<4x3xf32>) -> tensor<?x4xf32>
    %24 = "sc.mul"(%23, %18) : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %25 = "sc.add"(%14, %24) : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
    "func.return"(%25) : (tensor<?x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
