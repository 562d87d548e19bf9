// RUN: expert-fusion
// Qwen2-MoE: a shared SwiGLU expert of intermediate 6 = 2 x 3 (the routed ffn), scaled by
// sigmoid(shared_expert_gate(x)), becomes experts 2 and 3 that every token is routed to with the
// gate as weight: ids/weights get two columns, the stacks get the shared expert's row chunks
// (down: column chunks), and one dispatch/grouped chain with top_k 1+2 computes all of it.
// CHECK: %9 = "sc.sigmoid"(%8)
// CHECK-NEXT: %10 = "sc.constant"() {value = dense<[[2, 3]]> : tensor<1x2xi64>}
// CHECK-NEXT: %11 = "sc.broadcast_to"(%10) {shape = ["tokens", 2 : i64]}
// CHECK-NEXT: %12 = "sc.concat"(%2#1, %11) {axis = 1 : i64} : (tensor<?x1xi64>, tensor<?x2xi64>) -> tensor<?x3xi64>
// CHECK-NEXT: %13 = "sc.broadcast_to"(%9) {shape = ["tokens", 2 : i64]}
// CHECK-NEXT: %14 = "sc.concat"(%4, %13) {axis = 1 : i64}
// CHECK-NEXT: %15 = "sc.reshape"(%shared_expert.gate_proj.weight) {shape = [2 : i64, 3 : i64, 4 : i64]}
// CHECK-NEXT: %16 = "sc.concat"(%5, %15) {axis = 0 : i64} : (tensor<2x3x4xf32>, tensor<2x3x4xf32>) -> tensor<4x3x4xf32>
// CHECK: %19 = "sc.reshape"(%shared_expert.down_proj.weight) {shape = [4 : i64, 2 : i64, 3 : i64]}
// CHECK-NEXT: %20 = "sc.transpose"(%19) {perm = array<i64: 1, 0, 2>}
// CHECK-NEXT: %21 = "sc.concat"(%7, %20) {axis = 0 : i64} : (tensor<2x4x3xf32>, tensor<2x4x3xf32>) -> tensor<4x4x3xf32>
// CHECK-NEXT: %22:2 = "sc.moe_dispatch"(%12) {num_experts = 4 : i64}
// CHECK-NEXT: %23 = "sc.moe_permute"(%x, %22#0) {top_k = 3 : i64}
// CHECK-NEXT: %24 = "sc.moe_gated_grouped_matmul"(%23, %16, %18, %22#1) {activation = "silu"}
// CHECK-NEXT: %25 = "sc.grouped_matmul"(%24, %21, %22#1)
// CHECK-NEXT: %26 = "sc.moe_combine"(%25, %22#0, %14)
// CHECK-NEXT: "func.return"(%26)
// CHECK-NOT: "sc.linear"(%x, %shared_expert
// CHECK-NOT: "sc.add"
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
    %11 = "sc.silu"(%10) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %12 = "sc.grouped_matmul"(%6, %8, %5#1) : (tensor<?x4xf32>, tensor<2x3x4xf32>, tensor<3xi64>) -> tensor<?x3xf32>
    %13 = "sc.mul"(%11, %12) : (tensor<?x3xf32>, tensor<?x3xf32>) -> tensor<?x3xf32>
    %14 = "sc.grouped_matmul"(%13, %9, %5#1) : (tensor<?x3xf32>, tensor<2x4x3xf32>, tensor<3xi64>) -> tensor<?x4xf32>
    %15 = "sc.moe_combine"(%14, %5#0, %4) : (tensor<?x4xf32>, tensor<?xi64>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %shared_expert.gate_proj.weight = "sc.param"() {name = "shared_expert.gate_proj.weight"} : () -> tensor<6x4xf32>
    %16 = "sc.linear"(%x, %shared_expert.gate_proj.weight) : (tensor<?x4xf32>, tensor<6x4xf32>) -> tensor<?x6xf32>
    %17 = "sc.silu"(%16) : (tensor<?x6xf32>) -> tensor<?x6xf32>
    %shared_expert.up_proj.weight = "sc.param"() {name = "shared_expert.up_proj.weight"} : () -> tensor<6x4xf32>
    %18 = "sc.linear"(%x, %shared_expert.up_proj.weight) : (tensor<?x4xf32>, tensor<6x4xf32>) -> tensor<?x6xf32>
    %19 = "sc.mul"(%17, %18) : (tensor<?x6xf32>, tensor<?x6xf32>) -> tensor<?x6xf32>
    %shared_expert.down_proj.weight = "sc.param"() {name = "shared_expert.down_proj.weight"} : () -> tensor<4x6xf32>
    %20 = "sc.linear"(%19, %shared_expert.down_proj.weight) : (tensor<?x6xf32>, tensor<4x6xf32>) -> tensor<?x4xf32>
    %shared_expert_gate.weight = "sc.param"() {name = "shared_expert_gate.weight"} : () -> tensor<1x4xf32>
    %21 = "sc.linear"(%x, %shared_expert_gate.weight) : (tensor<?x4xf32>, tensor<1x4xf32>) -> tensor<?x1xf32>
    %22 = "sc.sigmoid"(%21) : (tensor<?x1xf32>) -> tensor<?x1xf32>
    %23 = "sc.mul"(%20, %22) : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %24 = "sc.add"(%15, %23) : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
    "func.return"(%24) : (tensor<?x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
