// RUN: quantize{mode=q8_0}
// A SwiGLU MLP: the three sc.linear weights become q8_0 (K = 40 and 24 are not multiples of
// the block of 32: rows are padded in storage, the type keeps the logical shape). The weight
// names and the ops are unchanged; only the params' types say the weights are quantized.
// CHECK: %gate_proj.weight = "sc.param"() {name = "gate_proj.weight"} : () -> !sc.q8_0<24x40>
// CHECK-NEXT: "sc.linear"(%x, %gate_proj.weight) : (tensor<?x40xf32>, !sc.q8_0<24x40>) -> tensor<?x24xf32>
// CHECK: %up_proj.weight = "sc.param"() {name = "up_proj.weight"} : () -> !sc.q8_0<24x40>
// CHECK: %down_proj.weight = "sc.param"() {name = "down_proj.weight"} : () -> !sc.q8_0<40x24>
// CHECK-NEXT: "sc.linear"(%3, %down_proj.weight) : (tensor<?x24xf32>, !sc.q8_0<40x24>) -> tensor<?x40xf32>
// CHECK-NOT: tensor<24x40xf32>
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 40 : i64], sc.name = "x"}], function_type = (tensor<?x40xf32>) -> tensor<?x40xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x40xf32>):
    %gate_proj.weight = "sc.param"() {name = "gate_proj.weight"} : () -> tensor<24x40xf32>
    %0 = "sc.linear"(%x, %gate_proj.weight) : (tensor<?x40xf32>, tensor<24x40xf32>) -> tensor<?x24xf32>
    %1 = "sc.silu"(%0) : (tensor<?x24xf32>) -> tensor<?x24xf32>
    %up_proj.weight = "sc.param"() {name = "up_proj.weight"} : () -> tensor<24x40xf32>
    %2 = "sc.linear"(%x, %up_proj.weight) : (tensor<?x40xf32>, tensor<24x40xf32>) -> tensor<?x24xf32>
    %3 = "sc.mul"(%1, %2) : (tensor<?x24xf32>, tensor<?x24xf32>) -> tensor<?x24xf32>
    %down_proj.weight = "sc.param"() {name = "down_proj.weight"} : () -> tensor<40x24xf32>
    %4 = "sc.linear"(%3, %down_proj.weight) : (tensor<?x24xf32>, tensor<40x24xf32>) -> tensor<?x40xf32>
    "func.return"(%4) : (tensor<?x40xf32>) -> ()
  }) : () -> ()
}) : () -> ()
