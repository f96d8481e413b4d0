; refiner proof obligation statement1-ground
; expected result: unsat (no string breaks the obligation)
(set-logic QF_S)
(set-info :smt-lib-version 2.6)
(set-info :status unsat)
(assert (not (and (or (= "ec2:describeinstancestatus" "ec2:describeinstancestatus") false) (or (str.prefixof "iam:" "iam:createaccesskey") false) (or (str.prefixof "iam:" "iam:deleteaccesskey") false) (or (= "s3:deleteobject" "s3:deleteobject") false) (or (= "s3:deleteobjectversion" "s3:deleteobjectversion") (= "s3:deleteobjectversion" "s3:deleteobject") false) (or (= "s3:putobjectacl" "s3:putobjectacl") false) (or (str.prefixof "lambda:" "lambda:") false) (=> (= "s3:deleteobjectannotation" "s3:deleteobject") false) (=> (= "s3:deleteobjecttagging" "s3:deleteobject") false) (=> (= "s3:deleteobjectversionannotation" "s3:deleteobject") false) (=> (= "s3:deleteobjectversiontagging" "s3:deleteobject") false) (=> (= "s3:deleteobjectversionannotation" "s3:deleteobjectversion") false) (=> (= "s3:deleteobjectversiontagging" "s3:deleteobjectversion") false) true)))
(check-sat)
