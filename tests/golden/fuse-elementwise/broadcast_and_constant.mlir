// RUN: fuse-elementwise
// The sc.broadcast_to operand and the scalar constant join the group; the constant is copied
// into the region and the original, now unused, is erased.
// CHECK: "sc.fused"(%bias, %x) ({
// CHECK-NEXT: ^bb0(%arg0: tensor<8xf32>, %arg1: tensor<4x8xf32>):
// CHECK-NEXT: "sc.constant"() {value = dense<0.5> : tensor<f32>}
// CHECK-NEXT: "sc.broadcast_to"(%arg0) {shape = [4 : i64, 8 : i64]}
// CHECK-NEXT: "sc.mul"(%arg1,
// CHECK-NEXT: "sc.add"
// CHECK-NEXT: "sc.relu"
// CHECK-NEXT: "sc.yield"
// CHECK-NEXT: }) {kind = "elementwise"} : (tensor<8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
// CHECK-NEXT: "func.return"
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.name = "x"}, {sc.name = "bias"}], function_type = (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<4x8xf32>, %bias: tensor<8xf32>):
    %0 = "sc.broadcast_to"(%bias) {shape = [4 : i64, 8 : i64]} : (tensor<8xf32>) -> tensor<4x8xf32>
    %1 = "sc.constant"() {value = dense<0.5> : tensor<f32>} : () -> tensor<f32>
    %2 = "sc.mul"(%x, %1) : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
    %3 = "sc.add"(%2, %0) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %4 = "sc.relu"(%3) : (tensor<4x8xf32>) -> tensor<4x8xf32>
    "func.return"(%4) : (tensor<4x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
