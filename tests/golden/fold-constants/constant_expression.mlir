// RUN: fold-constants
// exp([1, 2, 3]) * 2 depends only on constants: the whole subgraph becomes one sc.constant
// (its value computed by the ops' references), and the input constants are erased.
// CHECK: %0 = "sc.constant"() {value = dense<[5.43656{{[0-9]*}}, 14.7781{{[0-9]*}}, 40.1710{{[0-9]*}}]> : tensor<3xf32>}
// CHECK-NOT: "sc.exp"
// CHECK-NOT: "sc.mul"
// CHECK-NEXT: "sc.add"(%x, %0)
// CHECK-NEXT: "func.return"
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 3 : i64], sc.name = "x"}], function_type = (tensor<?x3xf32>) -> tensor<?x3xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x3xf32>):
    %0 = "sc.constant"() {value = dense<[1.0, 2.0, 3.0]> : tensor<3xf32>} : () -> tensor<3xf32>
    %1 = "sc.exp"(%0) : (tensor<3xf32>) -> tensor<3xf32>
    %2 = "sc.constant"() {value = dense<2.0> : tensor<f32>} : () -> tensor<f32>
    %3 = "sc.mul"(%1, %2) : (tensor<3xf32>, tensor<f32>) -> tensor<3xf32>
    %4 = "sc.add"(%x, %3) : (tensor<?x3xf32>, tensor<3xf32>) -> tensor<?x3xf32>
    "func.return"(%4) : (tensor<?x3xf32>) -> ()
  }) : () -> ()
}) : () -> ()
