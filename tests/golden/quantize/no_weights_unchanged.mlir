// RUN: quantize{mode=q4_0}
// Nothing to quantize: a matmul of two inputs (sc.matmul is not a weight op) and a weight read
// only by sc.rms_norm. The IR comes out unchanged.
// CHECK: %norm.weight = "sc.param"() {name = "norm.weight"} : () -> tensor<8xf32>
// CHECK-NEXT: "sc.rms_norm"(%x, %norm.weight)
// CHECK-NEXT: "sc.matmul"(%0, %w)
// CHECK-NOT: !sc.
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 8 : i64], sc.name = "x"}, {sc.name = "w"}], function_type = (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x8xf32>, %w: tensor<8x8xf32>):
    %norm.weight = "sc.param"() {name = "norm.weight"} : () -> tensor<8xf32>
    %0 = "sc.rms_norm"(%x, %norm.weight) {eps = 1.0e-06 : f64} : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
    %1 = "sc.matmul"(%0, %w) {transpose_a = false, transpose_b = false} : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
    "func.return"(%1) : (tensor<?x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
