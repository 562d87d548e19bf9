// RUN: infer-shapes
// Without a binding the pass only re-derives the types: valid IR comes out unchanged, symbolic
// dims included.
// CHECK: arg_attrs = [{sc.dims = ["tokens", 8 : i64], sc.name = "x"}]
// CHECK: "sc.broadcast_to"(%0) {shape = ["tokens", 8 : i64]} : (tensor<f32>) -> tensor<?x8xf32>
// CHECK-NEXT: "sc.add"(%x, %1) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 8 : i64], sc.name = "x"}], function_type = (tensor<?x8xf32>) -> tensor<?x8xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x8xf32>):
    %0 = "sc.constant"() {value = dense<1.0> : tensor<f32>} : () -> tensor<f32>
    %1 = "sc.broadcast_to"(%0) {shape = ["tokens", 8 : i64]} : (tensor<f32>) -> tensor<?x8xf32>
    %2 = "sc.add"(%x, %1) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
    "func.return"(%2) : (tensor<?x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
