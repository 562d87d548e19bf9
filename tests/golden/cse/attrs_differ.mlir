// RUN: cse
// Same op and operand but different attributes (axis) are different computations; the same
// weight read twice is one sc.param.
// CHECK: "sc.param"() {name = "w"}
// CHECK-NOT: "sc.param"
// CHECK: "sc.softmax"(%{{.*}}) {axis = 0 : i64}
// CHECK: "sc.softmax"(%{{.*}}) {axis = 1 : i64}
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.name = "x"}], function_type = (tensor<3x4xf32>) -> (tensor<3x4xf32>, tensor<3x4xf32>), sym_name = "main"}> ({
  ^bb0(%x: tensor<3x4xf32>):
    %w0 = "sc.param"() {name = "w"} : () -> tensor<3x4xf32>
    %w1 = "sc.param"() {name = "w"} : () -> tensor<3x4xf32>
    %a = "sc.add"(%x, %w0) : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %b = "sc.add"(%x, %w1) : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %s0 = "sc.softmax"(%a) {axis = 0 : i64} : (tensor<3x4xf32>) -> tensor<3x4xf32>
    %s1 = "sc.softmax"(%b) {axis = 1 : i64} : (tensor<3x4xf32>) -> tensor<3x4xf32>
    "func.return"(%s0, %s1) : (tensor<3x4xf32>, tensor<3x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
