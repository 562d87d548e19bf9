// RUN: infer-shapes{bind="batch=2"}
// Only batch is bound: seq stays symbolic, and the reshape's batch*seq rows become 2*seq.
// CHECK: arg_attrs = [{sc.dims = [2 : i64, "seq", 4 : i64], sc.name = "x"}]
// CHECK: "sc.reshape"(%x) {shape = [-1 : i64, 4 : i64]} : (tensor<2x?x4xf32>) -> tensor<?x4xf32>
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["batch", "seq", 4 : i64], sc.name = "x"}], function_type = (tensor<?x?x4xf32>) -> tensor<?x4xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x?x4xf32>):
    %0 = "sc.reshape"(%x) {shape = [-1 : i64, 4 : i64]} : (tensor<?x?x4xf32>) -> tensor<?x4xf32>
    "func.return"(%0) : (tensor<?x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
