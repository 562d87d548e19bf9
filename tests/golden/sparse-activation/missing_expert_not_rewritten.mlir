// RUN: sparse-activation
// Three experts are routed but only experts 0 and 1 are summed: tokens routed to expert 2 would
// get its output from a dispatch form, so nothing changes.
// CHECK: %5 = "sc.scatter"(%4, %2#1, %2#0)
// CHECK: %6 = "sc.linear"(%x, %fc1.0)
// CHECK: %11 = "sc.linear"(%x, %fc1.1)
// CHECK: %16 = "sc.add"(%10, %15)
// CHECK-NEXT: "func.return"(%16)
// CHECK-NOT: "sc.moe_dispatch"
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 4 : i64], sc.name = "x"}], function_type = (tensor<?x4xf32>) -> tensor<?x4xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x4xf32>):
    %router = "sc.param"() {name = "router"} : () -> tensor<3x4xf32>
    %0 = "sc.linear"(%x, %router) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %1 = "sc.softmax"(%0) {axis = -1 : i64} : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %2:2 = "sc.topk"(%1) {axis = -1 : i64, k = 2 : i64, largest = true} : (tensor<?x3xf32>) -> (tensor<?x2xf32>, tensor<?x2xi64>)
    %3 = "sc.constant"() {value = dense<0.0> : tensor<f32>} : () -> tensor<f32>
    %4 = "sc.broadcast_to"(%3) {shape = ["tokens", 3 : i64]} : (tensor<f32>) -> tensor<?x3xf32>
    %5 = "sc.scatter"(%4, %2#1, %2#0) {axis = -1 : i64} : (tensor<?x3xf32>, tensor<?x2xi64>, tensor<?x2xf32>) -> tensor<?x3xf32>
    %fc1.0 = "sc.param"() {name = "fc1.0"} : () -> tensor<3x4xf32>
    %6 = "sc.linear"(%x, %fc1.0) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %7 = "sc.relu"(%6) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %fc2.0 = "sc.param"() {name = "fc2.0"} : () -> tensor<4x3xf32>
    %8 = "sc.linear"(%7, %fc2.0) : (tensor<?x3xf32>, tensor<4x3xf32>) -> tensor<?x4xf32>
    %9 = "sc.slice"(%5) {axis = 1 : i64, step = 1 : i64, stop = 1 : i64} : (tensor<?x3xf32>) -> tensor<?x1xf32>
    %10 = "sc.mul"(%8, %9) : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %fc1.1 = "sc.param"() {name = "fc1.1"} : () -> tensor<3x4xf32>
    %11 = "sc.linear"(%x, %fc1.1) : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
    %12 = "sc.relu"(%11) : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %fc2.1 = "sc.param"() {name = "fc2.1"} : () -> tensor<4x3xf32>
    %13 = "sc.linear"(%12, %fc2.1) : (tensor<?x3xf32>, tensor<4x3xf32>) -> tensor<?x4xf32>
    %14 = "sc.slice"(%5) {axis = 1 : i64, start = 1 : i64, step = 1 : i64, stop = 2 : i64} : (tensor<?x3xf32>) -> tensor<?x1xf32>
    %15 = "sc.mul"(%13, %14) : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
    %16 = "sc.add"(%10, %15) : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
    "func.return"(%16) : (tensor<?x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
