// RUN: fuse-elementwise,infer-shapes{bind="tokens=3"}
// The sc.fused body's block arguments take the bound operand types; its ops and results follow.
// CHECK: "sc.fused"(%a, %b) ({
// CHECK-NEXT: ^bb0(%arg0: tensor<3x8xf32>, %arg1: tensor<1x8xf32>):
// CHECK-NEXT: "sc.exp"(%arg0) : (tensor<3x8xf32>) -> tensor<3x8xf32>
// CHECK-NEXT: "sc.mul"({{.*}}) : (tensor<3x8xf32>, tensor<1x8xf32>) -> tensor<3x8xf32>
// CHECK-NEXT: "sc.yield"({{.*}}) : (tensor<3x8xf32>) -> ()
// CHECK-NEXT: }) {kind = "elementwise"} : (tensor<3x8xf32>, tensor<1x8xf32>) -> tensor<3x8xf32>
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 8 : i64], sc.name = "a"}, {sc.name = "b"}], function_type = (tensor<?x8xf32>, tensor<1x8xf32>) -> tensor<?x8xf32>, sym_name = "main"}> ({
  ^bb0(%a: tensor<?x8xf32>, %b: tensor<1x8xf32>):
    %0 = "sc.exp"(%a) : (tensor<?x8xf32>) -> tensor<?x8xf32>
    %1 = "sc.mul"(%0, %b) : (tensor<?x8xf32>, tensor<1x8xf32>) -> tensor<?x8xf32>
    "func.return"(%1) : (tensor<?x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
