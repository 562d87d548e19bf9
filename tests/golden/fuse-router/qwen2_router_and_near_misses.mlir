// RUN: fuse-router
// Qwen2-MoE / OLMoE (no renormalization): softmax then top 4 becomes sc.softmax_topk without
// normalize. A second router whose probabilities are also returned (an auxiliary loss would
// read them) keeps its softmax and topk: fusing would compute the softmax twice.
// CHECK: %1:2 = "sc.softmax_topk"(%0) {k = 4 : i64, normalize = false} : (tensor<?x8xf32>) -> (tensor<?x4xf32>, tensor<?x4xi64>)
// CHECK: %3 = "sc.softmax"(%2) {axis = -1 : i64}
// CHECK-NEXT: %4:2 = "sc.topk"(%3) {axis = -1 : i64, k = 2 : i64, largest = true}
// CHECK-NOT: sc.softmax_topk
// CHECK: "func.return"(%1#0, %1#1, %4#0, %3)
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 16 : i64], sc.name = "x"}], function_type = (tensor<?x16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi64>, tensor<?x2xf32>, tensor<?x8xf32>), sym_name = "main"}> ({
  ^bb0(%x: tensor<?x16xf32>):
    %gate.weight = "sc.param"() {name = "gate.weight"} : () -> tensor<8x16xf32>
    %0 = "sc.linear"(%x, %gate.weight) : (tensor<?x16xf32>, tensor<8x16xf32>) -> tensor<?x8xf32>
    %1 = "sc.softmax"(%0) {axis = -1 : i64} : (tensor<?x8xf32>) -> tensor<?x8xf32>
    %2:2 = "sc.topk"(%1) {axis = -1 : i64, k = 4 : i64, largest = true} : (tensor<?x8xf32>) -> (tensor<?x4xf32>, tensor<?x4xi64>)
    %gate2.weight = "sc.param"() {name = "gate2.weight"} : () -> tensor<8x16xf32>
    %3 = "sc.linear"(%x, %gate2.weight) : (tensor<?x16xf32>, tensor<8x16xf32>) -> tensor<?x8xf32>
    %4 = "sc.softmax"(%3) {axis = -1 : i64} : (tensor<?x8xf32>) -> tensor<?x8xf32>
    %5:2 = "sc.topk"(%4) {axis = -1 : i64, k = 2 : i64, largest = true} : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi64>)
    "func.return"(%2#0, %2#1, %5#0, %4) : (tensor<?x4xf32>, tensor<?x4xi64>, tensor<?x2xf32>, tensor<?x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
