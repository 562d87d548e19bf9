// RUN: fold-constants{max-constant-elements=4}
// The transposed 2x3 table has 6 elements, more than max-constant-elements: it becomes a new
// weight named after what produced it, read by an sc.param. The weight w is not folded
// (fold-params is off).
// CHECK: %constant.T = "sc.param"() {name = "constant.T"} : () -> tensor<3x2xf32>
// CHECK-NEXT: %w = "sc.param"() {name = "w"}
// CHECK-NEXT: "sc.transpose"(%w)
// CHECK-NEXT: "sc.matmul"(%x, %constant.T)
// CHECK-NOT: "sc.constant"
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.name = "x"}], function_type = (tensor<4x3xf32>) -> (tensor<4x2xf32>, tensor<3x2xf32>), sym_name = "main"}> ({
  ^bb0(%x: tensor<4x3xf32>):
    %0 = "sc.constant"() {value = dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>} : () -> tensor<2x3xf32>
    %1 = "sc.transpose"(%0) {perm = array<i64: 1, 0>} : (tensor<2x3xf32>) -> tensor<3x2xf32>
    %w = "sc.param"() {name = "w"} : () -> tensor<2x3xf32>
    %2 = "sc.transpose"(%w) {perm = array<i64: 1, 0>} : (tensor<2x3xf32>) -> tensor<3x2xf32>
    %3 = "sc.matmul"(%x, %1) {transpose_a = false, transpose_b = false} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
    "func.return"(%3, %2) : (tensor<4x2xf32>, tensor<3x2xf32>) -> ()
  }) : () -> ()
}) : () -> ()
