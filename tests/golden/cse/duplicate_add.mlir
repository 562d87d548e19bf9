// RUN: cse
// The second x + x is the first one; the product then squares it.
// CHECK: %0 = "sc.add"(%x, %x)
// CHECK-NOT: "sc.add"
// CHECK: "sc.mul"(%0, %0)
// CHECK-NEXT: "func.return"
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 4 : i64], sc.name = "x"}], function_type = (tensor<?x4xf32>) -> tensor<?x4xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x4xf32>):
    %0 = "sc.add"(%x, %x) : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
    %1 = "sc.add"(%x, %x) : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
    %2 = "sc.mul"(%0, %1) : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
    "func.return"(%2) : (tensor<?x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
