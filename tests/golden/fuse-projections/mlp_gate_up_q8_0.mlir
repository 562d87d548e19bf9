// RUN: quantize{mode=q8_0},fuse-projections
// A SwiGLU MLP quantized, then its gate and up projections (same input, same format and layout)
// stacked into one q8_0 weight read by one sc.linear; the two results are slices of its output.
// The down projection reads another value: left alone. The stacked weight replaces the two.
// CHECK: %gate_proj_up_proj.weight = "sc.param"() {name = "gate_proj+up_proj.weight"} : () -> !sc.q8_0<48x40>
// CHECK-NEXT: %0 = "sc.linear"(%x, %gate_proj_up_proj.weight) : (tensor<?x40xf32>, !sc.q8_0<48x40>) -> tensor<?x48xf32>
// CHECK-NEXT: %1 = "sc.slice"(%0) {axis = 1 : i64, start = 0 : i64, step = 1 : i64, stop = 24 : i64}
// CHECK-NEXT: %2 = "sc.slice"(%0) {axis = 1 : i64, start = 24 : i64, step = 1 : i64, stop = 48 : i64}
// CHECK-NEXT: "sc.silu"(%1)
// CHECK-NEXT: "sc.mul"(%3, %2)
// CHECK-NOT: name = "gate_proj.weight"
// CHECK-NOT: name = "up_proj.weight"
// CHECK: "sc.linear"(%4, %down_proj.weight) : (tensor<?x24xf32>, !sc.q8_0<40x24>)
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
