// RUN: fold-constants
// Nothing here folds: a result with a symbolic dim, a broadcast that would expand a scalar into
// a large new weight, and an integer division by zero (left to fail at run time).
// CHECK: "sc.broadcast_to"(%0) {shape = ["tokens", 8 : i64]}
// CHECK: "sc.broadcast_to"(%0) {shape = [16 : i64, 16 : i64]}
// CHECK: "sc.div"
// CHECK-NOT: "sc.param"
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 8 : i64], sc.name = "x"}], function_type = (tensor<?x8xf32>) -> (tensor<?x8xf32>, tensor<16x16xf32>, tensor<1xi64>), sym_name = "main"}> ({
  ^bb0(%x: tensor<?x8xf32>):
    %0 = "sc.constant"() {value = dense<1.0> : tensor<f32>} : () -> tensor<f32>
    %1 = "sc.broadcast_to"(%0) {shape = ["tokens", 8 : i64]} : (tensor<f32>) -> tensor<?x8xf32>
    %2 = "sc.add"(%x, %1) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
    %3 = "sc.broadcast_to"(%0) {shape = [16 : i64, 16 : i64]} : (tensor<f32>) -> tensor<16x16xf32>
    %4 = "sc.constant"() {value = dense<7> : tensor<1xi64>} : () -> tensor<1xi64>
    %5 = "sc.constant"() {value = dense<0> : tensor<1xi64>} : () -> tensor<1xi64>
    %6 = "sc.div"(%4, %5) : (tensor<1xi64>, tensor<1xi64>) -> tensor<1xi64>
    "func.return"(%2, %3, %6) : (tensor<?x8xf32>, tensor<16x16xf32>, tensor<1xi64>) -> ()
  }) : () -> ()
}) : () -> ()
