// RUN: expert-fusion
// A shared expert whose intermediate size (4) is not a multiple of the routed experts' (3) cannot
// be split into routed-size chunks: it stays a dense MLP added after the combine; the routed
// gelu(gate) * up is still fused.
// CHECK: %10 = "sc.moe_gated_grouped_matmul"(%6, %7, %8, %5#1) {activation = "gelu"}
// CHECK: %12 = "sc.moe_combine"(%11, %5#0, %4)
// CHECK: %13 = "sc.linear"(%x, %shared_expert.gate_proj.weight)
// CHECK-NEXT: %14 = "sc.gelu"(%13)
// CHECK: %18 = "sc.add"(%12, %17)
// CHECK-NEXT: "func.return"(%18)
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 4 : i64], sc.name = "x"}], function_type = (tensor<?x4xf32>) -> tensor<?x4xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x4xf32>):
    %gate.weight = "sc.param"() {name = "gate.weight"} : () -> tensor<2x4xf32>
    %0 = "sc.linear"(%x, %gate.weight) : (tensor<?x4xf32>, tensor<2x4xf32>) -> tensor<?x2xf32>
    %1 = "sc.softmax"(%0) {axis = -1 : i64} : (tensor<?x2xf32>) -> tensor<?x2xf32>
    %2:2 = "sc.topk"(%1) {axis = -1 : i64, k = 1 : i64, largest = true} : (tensor<?x2xf32>) -> (tensor<?x1xf32>, tensor<?x1xi64>)
    %3 = "sc.sum"(%2#0) {axes = array<i64: -1>, keepdims = true} : (tensor<?x1xf32>) -> tensor<?x1xf32>
    %4 = "sc.div"(%2#0, %3) : (tensor<?x1xf32>, tensor<?x1xf32>) -> tensor<?x1xf32>
    %5:2 = "sc.moe_dispatch"(%2#1) {num_experts = 2 : i64} : (tensor<?x1xi64>) -> (tensor<?xi64>, tensor<3xi64>)
    %6 = "sc.moe_permute"(%x, %5#0) {top_k = 1 : i64} : (tensor<?x4xf32>, tensor<?xi64>) -> tensor<?x4xf32>
    %experts.0.gate_proj.weight = "sc.param"() {name = "experts.0.gate_proj.weight"} : () -> tensor<3x4xf32>
    %experts.1.gate_proj.weight = "sc.param"() {name = "experts.1.gate_proj.weight"} : () -> tensor<3x4xf32>
    %7 = "sc.stack"(%experts.0.gate_proj.weight, %experts.1.gate_proj.weight) {axis = 0 : i64} : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<2x3x4xf32>
    %experts.0.up_proj.weight = "sc.param"() {name = "experts.0.up_proj.weight"} : () -> tensor<3x4xf32>
    %experts.1.up_proj.weight = "sc.param"() {name = "experts.1.up_proj.weight"} : () -> tensor<3x4xf32>
    %8 = "sc.stack"(%experts.0.up_proj.weight, %experts.1.up_proj.weight) {axis = 0 : i64} : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<2x3x4xf32>
    %experts.0.down_proj.weight = "sc.param"() {name = "experts.0.down_proj.weight"} : () -> tensor<4x3xf32>
    %experts.1.down_proj.weight = "sc.param"() {name = "experts.1.down_proj.weight"} : () -> tensor<4x3xf32>
    %9 = "sc.stack"(%experts.0.down_proj.weight, %experts.1.down_proj.weight) {axis = 0 : i64} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<2x4x3xf32>
    %10 = "sc.grouped_matmul"(%6, %7, %5#1) : (tensor<?x4xf32>, tensor<2x3x4xf32>, tensor<3xi64>) -> tensor<?x3xf32>
    %11 = "sc.gelu"(%10) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %12 = "sc.grouped_matmul"(%6, %8, %5#1) : (tensor<?x4xf32>, tensor<2x3x4xf32>, tensor<3xi64>) -> tensor<?x3xf32>
    %13 = "sc.mul"(%11, %12) : (tensor<?x3xf32>, tensor<?x3xf32>) -> tensor<?x3xf32>
    %14 = "sc.grouped_matmul"(%13, %9, %5#1) : (tensor<?x3xf32>, tensor<2x4x3xf32>, tensor<3xi64>) -> tensor<?x4xf32>
    %15 = "sc.moe_combine"(%14, %5#0, %4) : (tensor<?x4xf32>, tensor<?xi64>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %shared_expert.gate_proj.weight = "sc.param"() {name = "shared_expert.gate_proj.weight"} : () -> tensor<4x4xf32>
    %16 = "sc.linear"(%x, %shared_expert.gate_proj.weight) : (tensor<?x4xf32>, tensor<4x4xf32>) -> tensor<?x4xf32>
    %17 = "sc.gelu"(%16) : (tensor<?x4xf32>) -> tensor<?x4xf32>
    %shared_expert.up_proj.weight = "sc.param"() {name = "shared_expert.up_proj.weight"} : () -> tensor<4x4xf32>
    %18 = "sc.linear"(%x, %shared_expert.up_proj.weight) : (tensor<?x4xf32>, tensor<4x4xf32>) -> tensor<?x4xf32>
    %19 = "sc.mul"(%17, %18) : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
    %shared_expert.down_proj.weight = "sc.param"() {name = "shared_expert.down_proj.weight"} : () -> tensor<4x4xf32>
    %20 = "sc.linear"(%19, %shared_expert.down_proj.weight) : (tensor<?x4xf32>, tensor<4x4xf32>) -> tensor<?x4xf32>
    %21 = "sc.add"(%15, %20) : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
    "func.return"(%21) : (tensor<?x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
