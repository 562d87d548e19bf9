// RUN: expert-fusion
// The sparse form's silu(grouped gate) * grouped up becomes one sc.moe_gated_grouped_matmul over
// the same permuted rows and offsets; the down projection and the weighted combine stay.
// CHECK-NOT: "sc.silu"
// CHECK: %5:2 = "sc.moe_dispatch"(%2#1) {num_experts = 3 : i64}
// CHECK: %10 = "sc.moe_gated_grouped_matmul"(%6, %7, %8, %5#1) {activation = "silu"} : (tensor<?x4xf32>, tensor<3x3x4xf32>, tensor<3x3x4xf32>, tensor<4xi64>) -> tensor<?x3xf32>
// CHECK-NEXT: %11 = "sc.grouped_matmul"(%10, %9, %5#1)
// CHECK-NEXT: %12 = "sc.moe_combine"(%11, %5#0, %4)
// CHECK-NEXT: "func.return"(%12)
// CHECK-NOT: "sc.mul"
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 4 : i64], sc.name = "x"}], function_type = (tensor<?x4xf32>) -> tensor<?x4xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x4xf32>):
    %gate.weight = "sc.param"() {name = "gate.weight"} : () -> tensor<3x4xf32>
    %0 = "sc.linear"(%x, %gate.weight) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %1 = "sc.softmax"(%0) {axis = -1 : i64} : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %2:2 = "sc.topk"(%1) {axis = -1 : i64, k = 2 : i64, largest = true} : (tensor<?x3xf32>) -> (tensor<?x2xf32>, tensor<?x2xi64>)
    %3 = "sc.sum"(%2#0) {axes = array<i64: -1>, keepdims = true} : (tensor<?x2xf32>) -> tensor<?x1xf32>
    %4 = "sc.div"(%2#0, %3) : (tensor<?x2xf32>, tensor<?x1xf32>) -> tensor<?x2xf32>
    %5:2 = "sc.moe_dispatch"(%2#1) {num_experts = 3 : i64} : (tensor<?x2xi64>) -> (tensor<?xi64>, tensor<4xi64>)
    %6 = "sc.moe_permute"(%x, %5#0) {top_k = 2 : i64} : (tensor<?x4xf32>, tensor<?xi64>) -> tensor<?x4xf32>
    %experts.0.gate_proj.weight = "sc.param"() {name = "experts.0.gate_proj.weight"} : () -> tensor<3x4xf32>
    %experts.1.gate_proj.weight = "sc.param"() {name = "experts.1.gate_proj.weight"} : () -> tensor<3x4xf32>
    %experts.2.gate_proj.weight = "sc.param"() {name = "experts.2.gate_proj.weight"} : () -> tensor<3x4xf32>
    %7 = "sc.stack"(%experts.0.gate_proj.weight, %experts.1.gate_proj.weight, %experts.2.gate_proj.weight) {axis = 0 : i64} : (tensor<3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x3x4xf32>
    %experts.0.up_proj.weight = "sc.param"() {name = "experts.0.up_proj.weight"} : () -> tensor<3x4xf32>
    %experts.1.up_proj.weight = "sc.param"() {name = "experts.1.up_proj.weight"} : () -> tensor<3x4xf32>
    %experts.2.up_proj.weight = "sc.param"() {name = "experts.2.up_proj.weight"} : () -> tensor<3x4xf32>
    %8 = "sc.stack"(%experts.0.up_proj.weight, %experts.1.up_proj.weight, %experts.2.up_proj.weight) {axis = 0 : i64} : (tensor<3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x3x4xf32>
    %experts.0.down_proj.weight = "sc.param"() {name = "experts.0.down_proj.weight"} : () -> tensor<4x3xf32>
    %experts.1.down_proj.weight = "sc.param"() {name = "experts.1.down_proj.weight"} : () -> tensor<4x3xf32>
    %experts.2.down_proj.weight = "sc.param"() {name = "experts.2.down_proj.weight"} : () -> tensor<4x3xf32>
    %9 = "sc.stack"(%experts.0.down_proj.weight, %experts.1.down_proj.weight, %experts.2.down_proj.weight) {axis = 0 : i64} : (tensor<4x3xf32>, tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<3x4x3xf32>
    %10 = "sc.grouped_matmul"(%6, %7, %5#1) : (tensor<?x4xf32>, tensor<3x3x4xf32>, tensor<4xi64>) -> tensor<?x3xf32>
    %11 = "sc.silu"(%10) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %12 = "sc.grouped_matmul"(%6, %8, %5#1) : (tensor<?x4xf32>, tensor<3x3x4xf32>, tensor<4xi64>) -> tensor<?x3xf32>
    %13 = "sc.mul"(%11, %12) : (tensor<?x3xf32>, tensor<?x3xf32>) -> tensor<?x3xf32>
    %14 = "sc.grouped_matmul"(%13, %9, %5#1) : (tensor<?x3xf32>, tensor<3x4x3xf32>, tensor<4xi64>) -> tensor<?x4xf32>
    %15 = "sc.moe_combine"(%14, %5#0, %4) : (tensor<?x4xf32>, tensor<?xi64>, tensor<?x2xf32>) -> tensor<?x4xf32>
    "func.return"(%15) : (tensor<?x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
