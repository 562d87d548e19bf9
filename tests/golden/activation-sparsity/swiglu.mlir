// RUN: activation-sparsity{target=0.5}
// A SwiGLU MLP (weights in swiglu.safetensors beside this file). Each projection becomes
// sc.sparse_input_linear over its weight transposed to [in, out] (a new weight "<name>.t"; the
// old weights are no longer read). gate and up share one calibrated threshold (on x), down has
// its own (on silu(gate) * up). The values depend on the seeded calibration; the tests check them.
// CHECK: %gate_proj.weight.t = "sc.param"() {name = "gate_proj.weight.t"} : () -> tensor<8x16xf32>
// CHECK-NEXT: %0 = "sc.sparse_input_linear"(%x, %gate_proj.weight.t) {threshold = {{[0-9.e-]+}} : f64} : (tensor<?x8xf32>, tensor<8x16xf32>) -> tensor<?x16xf32>
// CHECK-NEXT: "sc.silu"(%0)
// CHECK-NEXT: %up_proj.weight.t = "sc.param"() {name = "up_proj.weight.t"} : () -> tensor<8x16xf32>
// CHECK-NEXT: %2 = "sc.sparse_input_linear"(%x, %up_proj.weight.t) {threshold = {{[0-9.e-]+}} : f64}
// CHECK-NEXT: %3 = "sc.mul"(%1, %2)
// CHECK-NEXT: %down_proj.weight.t = "sc.param"() {name = "down_proj.weight.t"} : () -> tensor<16x8xf32>
// CHECK-NEXT: %4 = "sc.sparse_input_linear"(%3, %down_proj.weight.t) {threshold = {{[0-9.e-]+}} : f64} : (tensor<?x16xf32>, tensor<16x8xf32>) -> tensor<?x8xf32>
// CHECK-NEXT: "func.return"(%4)
// CHECK-NOT: "sc.linear"
// CHECK-NOT: "sc.param"() {name = "gate_proj.weight"}
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 8 : i64], sc.name = "x"}], function_type = (tensor<?x8xf32>) -> tensor<?x8xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x8xf32>):
    %gate_proj.weight = "sc.param"() {name = "gate_proj.weight"} : () -> tensor<16x8xf32>
    %0 = "sc.linear"(%x, %gate_proj.weight) : (tensor<?x8xf32>, tensor<16x8xf32>) -> tensor<?x16xf32>
    %1 = "sc.silu"(%0) : (tensor<?x16xf32>) -> tensor<?x16xf32>
    %up_proj.weight = "sc.param"() {name = "up_proj.weight"} : () -> tensor<16x8xf32>
    %2 = "sc.linear"(%x, %up_proj.weight) : (tensor<?x8xf32>, tensor<16x8xf32>) -> tensor<?x16xf32>
    %3 = "sc.mul"(%1, %2) : (tensor<?x16xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
    %down_proj.weight = "sc.param"() {name = "down_proj.weight"} : () -> tensor<8x16xf32>
    %4 = "sc.linear"(%3, %down_proj.weight) : (tensor<?x16xf32>, tensor<8x16xf32>) -> tensor<?x8xf32>
    "func.return"(%4) : (tensor<?x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
