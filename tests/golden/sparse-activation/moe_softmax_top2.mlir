// RUN: sparse-activation
// sc.nn.MoE(formulation="dense"), softmax top-2 of 3 SwiGLU experts: the routing stays, the
// dense [T, 3] matrix, its column slices and the per-expert linears go; each token runs through
// its 2 experts: dispatch, permute, grouped matmuls over stacked [E, out, in] weights, combine
// with the renormalized top-k weights (%4).
// CHECK: %2:2 = "sc.topk"(%1) {axis = -1 : i64, k = 2 : i64, largest = true}
// CHECK: %4 = "sc.div"(%2#0, %3)
// CHECK-NOT: "sc.scatter"
// CHECK: %5:2 = "sc.moe_dispatch"(%2#1) {num_experts = 3 : i64}
// CHECK-NEXT: %6 = "sc.moe_permute"(%x, %5#0) {top_k = 2 : i64}
// CHECK-NEXT: %experts.gate_proj.weight = "sc.stack"(%experts.0.gate_proj.weight, %experts.1.gate_proj.weight, %experts.2.gate_proj.weight) {axis = 0 : i64} : (tensor<3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x3x4xf32>
// CHECK-NEXT: %7 = "sc.grouped_matmul"(%6, %experts.gate_proj.weight, %5#1)
// CHECK-NEXT: %8 = "sc.silu"(%7)
// CHECK-NEXT: %experts.up_proj.weight = "sc.stack"
// CHECK-NEXT: %9 = "sc.grouped_matmul"(%6, %experts.up_proj.weight, %5#1)
// CHECK-NEXT: %10 = "sc.mul"(%8, %9)
// CHECK-NEXT: %experts.down_proj.weight = "sc.stack"{{.*}} -> tensor<3x4x3xf32>
// CHECK-NEXT: %11 = "sc.grouped_matmul"(%10, %experts.down_proj.weight, %5#1)
// CHECK-NEXT: %12 = "sc.moe_combine"(%11, %5#0, %4) : (tensor<?x4xf32>, tensor<?xi64>, tensor<?x2xf32>) -> tensor<?x4xf32>
// CHECK-NEXT: "func.return"(%12)
// CHECK-NOT: "sc.linear"
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 4 : i64], sc.name = "x"}], function_type = (tensor<?x4xf32>) -> tensor<?x4xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x4xf32>):
    %gate.weight = "sc.param"() {name = "gate.weight"} : () -> tensor<3x4xf32>
    %0 = "sc.linear"(%x, %gate.weight) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %1 = "sc.softmax"(%0) {axis = -1 : i64} : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %2:2 = "sc.topk"(%1) {axis = -1 : i64, k = 2 : i64, largest = true} : (tensor<?x3xf32>) -> (tensor<?x2xf32>, tensor<?x2xi64>)
    %3 = "sc.sum"(%2#0) {axes = array<i64: -1>, keepdims = true} : (tensor<?x2xf32>) -> tensor<?x1xf32>
    %4 = "sc.div"(%2#0, %3) : (tensor<?x2xf32>, tensor<?x1xf32>) -> tensor<?x2xf32>
    %5 = "sc.constant"() {value = dense<0.0> : tensor<f32>} : () -> tensor<f32>
    %6 = "sc.broadcast_to"(%5) {shape = ["tokens", 3 : i64]} : (tensor<f32>) -> tensor<?x3xf32>
    %7 = "sc.scatter"(%6, %2#1, %4) {axis = -1 : i64} : (tensor<?x3xf32>, tensor<?x2xi64>, tensor<?x2xf32>) -> tensor<?x3xf32>
    %experts.0.gate_proj.weight = "sc.param"() {name = "experts.0.gate_proj.weight"} : () -> tensor<3x4xf32>
    %8 = "sc.linear"(%x, %experts.0.gate_proj.weight) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %9 = "sc.silu"(%8) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %experts.0.up_proj.weight = "sc.param"() {name = "experts.0.up_proj.weight"} : () -> tensor<3x4xf32>
    %10 = "sc.linear"(%x, %experts.0.up_proj.weight) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %11 = "sc.mul"(%9, %10) : (tensor<?x3xf32>, tensor<?x3xf32>) -> tensor<?x3xf32>
    %experts.0.down_proj.weight = "sc.param"() {name = "experts.0.down_proj.weight"} : () -> tensor<4x3xf32>
    %12 = "sc.linear"(%11, %experts.0.down_proj.weight) : (tensor<?x3xf32>, tensor<4x3xf32>) -> tensor<?x4xf32>
    %13 = "sc.slice"(%7) {axis = 1 : i64, step = 1 : i64, stop = 1 : i64} : (tensor<?x3xf32>) -> tensor<?x1xf32>
    %14 = "sc.mul"(%12, %13) : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %experts.1.gate_proj.weight = "sc.param"() {name = "experts.1.gate_proj.weight"} : () -> tensor<3x4xf32>
    %15 = "sc.linear"(%x, %experts.1.gate_proj.weight) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %16 = "sc.silu"(%15) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %experts.1.up_proj.weight = "sc.param"() {name = "experts.1.up_proj.weight"} : () -> tensor<3x4xf32>
    %17 = "sc.linear"(%x, %experts.1.up_proj.weight) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %18 = "sc.mul"(%16, %17) : (tensor<?x3xf32>, tensor<?x3xf32>) -> tensor<?x3xf32>
    %experts.1.down_proj.weight = "sc.param"() {name = "experts.1.down_proj.weight"} : () -> tensor<4x3xf32>
    %19 = "sc.linear"(%18, %experts.1.down_proj.weight) : (tensor<?x3xf32>, tensor<4x3xf32>) -> tensor<?x4xf32>
    %20 = "sc.slice"(%7) {axis = 1 : i64, start = 1 : i64, step = 1 : i64, stop = 2 : i64} : (tensor<?x3xf32>) -> tensor<?x1xf32>
    %21 = "sc.mul"(%19, %20) : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %22 = "sc.add"(%14, %21) : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
    %experts.2.gate_proj.weight = "sc.param"() {name = "experts.2.gate_proj.weight"} : () -> tensor<3x4xf32>
    %23 = "sc.linear"(%x, %experts.2.gate_proj.weight) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %24 = "sc.silu"(%23) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %experts.2.up_proj.weight = "sc.param"() {name = "experts.2.up_proj.weight"} : () -> tensor<3x4xf32>
    %25 = "sc.linear"(%x, %experts.2.up_proj.weight) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %26 = "sc.mul"(%24, %25) : (tensor<?x3xf32>, tensor<?x3xf32>) -> tensor<?x3xf32>
    %experts.2.down_proj.weight = "sc.param"() {name = "experts.2.down_proj.weight"} : () -> tensor<4x3xf32>
    %27 = "sc.linear"(%26, %experts.2.down_proj.weight) : (tensor<?x3xf32>, tensor<4x3xf32>) -> tensor<?x4xf32>
    %28 = "sc.slice"(%7) {axis = 1 : i64, start = 2 : i64, step = 1 : i64} : (tensor<?x3xf32>) -> tensor<?x1xf32>
    %29 = "sc.mul"(%27, %28) : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %30 = "sc.add"(%22, %29) : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
    "func.return"(%30) : (tensor<?x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
