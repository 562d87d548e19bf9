// RUN: quantize{mode=q4_0,skip=none}
// A tied embedding: model.embed_tokens.weight is read by sc.embedding (which keeps the f32
// table) and by the output sc.linear. With skip=none the output projection is quantized into a
// new weight "<name>.q4_0" read by a new sc.param; the table itself stays f32.
// CHECK: %model.embed_tokens.weight = "sc.param"() {name = "model.embed_tokens.weight"} : () -> tensor<48x32xf32>
// CHECK-NEXT: "sc.embedding"(%input_ids, %model.embed_tokens.weight) : (tensor<?x?xi64>, tensor<48x32xf32>)
// CHECK: %model.embed_tokens.weight.q4_0 = "sc.param"() {name = "model.embed_tokens.weight.q4_0"} : () -> !sc.q4_0<48x32>
// CHECK-NEXT: "sc.linear"(%0, %model.embed_tokens.weight.q4_0) : (tensor<?x?x32xf32>, !sc.q4_0<48x32>) -> tensor<?x?x48xf32>
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["batch", "seq"], sc.name = "input_ids"}], function_type = (tensor<?x?xi64>) -> tensor<?x?x48xf32>, sym_name = "main"}> ({
  ^bb0(%input_ids: tensor<?x?xi64>):
    %model.embed_tokens.weight = "sc.param"() {name = "model.embed_tokens.weight"} : () -> tensor<48x32xf32>
    %0 = "sc.embedding"(%input_ids, %model.embed_tokens.weight) : (tensor<?x?xi64>, tensor<48x32xf32>) -> tensor<?x?x32xf32>
    %1 = "sc.linear"(%0, %model.embed_tokens.weight) : (tensor<?x?x32xf32>, tensor<48x32xf32>) -> tensor<?x?x48xf32>
    "func.return"(%1) : (tensor<?x?x48xf32>) -> ()
  }) : () -> ()
}) : () -> ()
