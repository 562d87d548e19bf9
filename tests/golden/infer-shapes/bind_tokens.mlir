// RUN: infer-shapes{bind="tokens=5"}
// tokens=5 makes the input static; every result type is re-derived from it, and the
// broadcast_to shape attribute naming tokens is specialized too.
// CHECK-NOT: ?x
// CHECK: arg_attrs = [{sc.name = "x"}], function_type = (tensor<5x8xf32>) -> tensor<5x8xf32>
// CHECK-NOT: ?x
// CHECK: "sc.broadcast_to"(%0) {shape = [5 : i64, 8 : i64]} : (tensor<f32>) -> tensor<5x8xf32>
// CHECK-NEXT: "sc.add"(%x, %1) : (tensor<5x8xf32>, tensor<5x8xf32>) -> tensor<5x8xf32>
// CHECK-NOT: ?x
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 8 : i64], sc.name = "x"}], function_type = (tensor<?x8xf32>) -> tensor<?x8xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x8xf32>):
    %0 = "sc.constant"() {value = dense<1.0> : tensor<f32>} : () -> tensor<f32>
    %1 = "sc.broadcast_to"(%0) {shape = ["tokens", 8 : i64]} : (tensor<f32>) -> tensor<?x8xf32>
    %2 = "sc.add"(%x, %1) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
    "func.return"(%2) : (tensor<?x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
