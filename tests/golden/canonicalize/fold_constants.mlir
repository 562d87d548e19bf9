// RUN: canonicalize
// sum(exp([0, 1, 2, 3] * 0.5)) is computed at compile time (f32 kept); the weight %w is not a
// constant, so w + 1 stays (folding weights is the fold-constants pass).
// CHECK: %w = "sc.param"() {name = "w"}
// CHECK-NEXT: %0 = "sc.constant"() {value = dense<9.848692> : tensor<f32>}
// CHECK-NOT: "sc.exp"
// CHECK-NOT: "sc.sum"
// CHECK: %w1 = "sc.add"(%w, %one) : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
// CHECK: %z = "sc.add"(%y, %0) : (tensor<?x4xf32>, tensor<f32>) -> tensor<?x4xf32>
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 4 : i64], sc.name = "x"}], function_type = (tensor<?x4xf32>) -> tensor<?x4xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x4xf32>):
    %w = "sc.param"() {name = "w"} : () -> tensor<4xf32>
    %k = "sc.constant"() {value = dense<[0.0, 1.0, 2.0, 3.0]> : tensor<4xf32>} : () -> tensor<4xf32>
    %half = "sc.constant"() {value = dense<0.5> : tensor<f32>} : () -> tensor<f32>
    %a = "sc.mul"(%k, %half) : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
    %b = "sc.exp"(%a) : (tensor<4xf32>) -> tensor<4xf32>
    %s = "sc.sum"(%b) {axes = array<i64: 0>, keepdims = false} : (tensor<4xf32>) -> tensor<f32>
    %one = "sc.constant"() {value = dense<1.0> : tensor<f32>} : () -> tensor<f32>
    %w1 = "sc.add"(%w, %one) : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
    %y = "sc.mul"(%x, %w1) : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
    %z = "sc.add"(%y, %s) : (tensor<?x4xf32>, tensor<f32>) -> tensor<?x4xf32>
    "func.return"(%z) : (tensor<?x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
