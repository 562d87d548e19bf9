// RUN: quantize{mode=int4,group=64}
// The default skip globs keep the MoE router (gate.weight) and lm_head in full precision; the
// expert stacks [E, N, K] read by sc.moe_gated_grouped_matmul and sc.grouped_matmul become int4
// with groups of 64 (format int4g64), and so does the unrelated sc.linear (proj.weight).
// CHECK: %gate.weight = "sc.param"() {name = "gate.weight"} : () -> tensor<4x64xf32>
// CHECK: %experts.gate_proj.weight = "sc.param"() {name = "experts.gate_proj.weight"} : () -> !sc.int4g64<4x32x64>
// CHECK-NEXT: %experts.up_proj.weight = "sc.param"() {name = "experts.up_proj.weight"} : () -> !sc.int4g64<4x32x64>
// CHECK-NEXT: %experts.down_proj.weight = "sc.param"() {name = "experts.down_proj.weight"} : () -> !sc.int4g64<4x64x32>
// CHECK: "sc.moe_gated_grouped_matmul"(%{{[0-9]+}}, %experts.gate_proj.weight, %experts.up_proj.weight, %{{[0-9]+}}#1) {activation = "silu"} : (tensor<?x64xf32>, !sc.int4g64<4x32x64>, !sc.int4g64<4x32x64>, tensor<5xi64>)
// CHECK-NEXT: "sc.grouped_matmul"(%{{[0-9]+}}, %experts.down_proj.weight, %{{[0-9]+}}#1) : (tensor<?x32xf32>, !sc.int4g64<4x64x32>, tensor<5xi64>)
// CHECK: %proj.weight = "sc.param"() {name = "proj.weight"} : () -> !sc.int4g64<64x64>
// CHECK: %lm_head.weight = "sc.param"() {name = "lm_head.weight"} : () -> tensor<16x64xf32>
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 64 : i64], sc.name = "x"}], function_type = (tensor<?x64xf32>) -> tensor<?x16xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x64xf32>):
    %gate.weight = "sc.param"() {name = "gate.weight"} : () -> tensor<4x64xf32>
    %0 = "sc.linear"(%x, %gate.weight) : (tensor<?x64xf32>, tensor<4x64xf32>) -> tensor<?x4xf32>
    %1 = "sc.softmax"(%0) {axis = -1 : i64} : (tensor<?x4xf32>) -> tensor<?x4xf32>
    %2:2 = "sc.topk"(%1) {axis = -1 : i64, k = 2 : i64, largest = true} : (tensor<?x4xf32>) -> (tensor<?x2xf32>, tensor<?x2xi64>)
    %experts.gate_proj.weight = "sc.param"() {name = "experts.gate_proj.weight"} : () -> tensor<4x32x64xf32>
    %experts.up_proj.weight = "sc.param"() {name = "experts.up_proj.weight"} : () -> tensor<4x32x64xf32>
    %experts.down_proj.weight = "sc.param"() {name = "experts.down_proj.weight"} : () -> tensor<4x64x32xf32>
    %4:2 = "sc.moe_dispatch"(%2#1) {num_experts = 4 : i64} : (tensor<?x2xi64>) -> (tensor<?xi64>, tensor<5xi64>)
    %5 = "sc.moe_permute"(%x, %4#0) {top_k = 2 : i64} : (tensor<?x64xf32>, tensor<?xi64>) -> tensor<?x64xf32>
    %6 = "sc.moe_gated_grouped_matmul"(%5, %experts.gate_proj.weight, %experts.up_proj.weight, %4#1) {activation = "silu"} : (tensor<?x64xf32>, tensor<4x32x64xf32>, tensor<4x32x64xf32>, tensor<5xi64>) -> tensor<?x32xf32>
    %7 = "sc.grouped_matmul"(%6, %experts.down_proj.weight, %4#1) : (tensor<?x32xf32>, tensor<4x64x32xf32>, tensor<5xi64>) -> tensor<?x64xf32>
    %8 = "sc.moe_combine"(%7, %4#0, %2#0) : (tensor<?x64xf32>, tensor<?xi64>, tensor<?x2xf32>) -> tensor<?x64xf32>
    %proj.weight = "sc.param"() {name = "proj.weight"} : () -> tensor<64x64xf32>
    %9 = "sc.linear"(%8, %proj.weight) : (tensor<?x64xf32>, tensor<64x64xf32>) -> tensor<?x64xf32>
    %lm_head.weight = "sc.param"() {name = "lm_head.weight"} : () -> tensor<16x64xf32>
    %10 = "sc.linear"(%9, %lm_head.weight) : (tensor<?x64xf32>, tensor<16x64xf32>) -> tensor<?x16xf32>
    "func.return"(%10) : (tensor<?x16xf32>) -> ()
  }) : () -> ()
}) : () -> ()
