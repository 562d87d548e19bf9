// RUN: canonicalize
// x + (-0.0), 1 * x and neg(neg(x)) disappear: the first output is %x itself. Adding zeros of a
// bigger shape broadcasts %y (its type changes), and a float times zero is NaN for inf/NaN,
// so both stay.
// CHECK-NOT: "sc.neg"
// CHECK: %zeros = "sc.constant"() {value = dense<0.0> : tensor<3x4xf32>}
// CHECK-NEXT: %e = "sc.add"(%y, %zeros) : (tensor<4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
// CHECK-NEXT: %f = "sc.mul"(%y, %zero)
// CHECK-NEXT: "func.return"(%x, %e, %f)
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 4 : i64], sc.name = "x"}, {sc.name = "y"}], function_type = (tensor<?x4xf32>, tensor<4xf32>) -> (tensor<?x4xf32>, tensor<3x4xf32>, tensor<4xf32>), sym_name = "main"}> ({
  ^bb0(%x: tensor<?x4xf32>, %y: tensor<4xf32>):
    %zero = "sc.constant"() {value = dense<-0.0> : tensor<f32>} : () -> tensor<f32>
    %a = "sc.add"(%x, %zero) : (tensor<?x4xf32>, tensor<f32>) -> tensor<?x4xf32>
    %ones = "sc.constant"() {value = dense<1.0> : tensor<4xf32>} : () -> tensor<4xf32>
    %b = "sc.mul"(%ones, %a) : (tensor<4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
    %c = "sc.neg"(%b) : (tensor<?x4xf32>) -> tensor<?x4xf32>
    %d = "sc.neg"(%c) : (tensor<?x4xf32>) -> tensor<?x4xf32>
    %zeros = "sc.constant"() {value = dense<0.0> : tensor<3x4xf32>} : () -> tensor<3x4xf32>
    %e = "sc.add"(%y, %zeros) : (tensor<4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %f = "sc.mul"(%y, %zero) : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
    "func.return"(%d, %e, %f) : (tensor<?x4xf32>, tensor<3x4xf32>, tensor<4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
