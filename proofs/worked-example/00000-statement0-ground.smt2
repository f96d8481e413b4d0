; refiner proof obligation statement0-ground
; expected result: unsat (no string breaks the obligation)
(set-logic QF_S)
(set-info :smt-lib-version 2.6)
(set-info :status unsat)
(assert (not (and (=> (= "lambda:createfunctionurlconfig" "lambda:createfunction") false) (=> (= "lambda:deletefunctioncodesigningconfig" "lambda:deletefunction") false) (=> (= "lambda:deletefunctionconcurrency" "lambda:deletefunction") false) (=> (= "lambda:deletefunctioneventinvokeconfig" "lambda:deletefunction") false) (=> (= "lambda:deletefunctionurlconfig" "lambda:deletefunction") false) (=> (= "lambda:getfunctioncodesigningconfig" "lambda:getfunction") false) (=> (= "lambda:getfunctionconcurrency" "lambda:getfunction") false) (=> (= "lambda:getfunctionconfiguration" "lambda:getfunction") false) (=> (= "lambda:getfunctioneventinvokeconfig" "lambda:getfunction") false) (=> (= "lambda:getfunctionrecursionconfig" "lambda:getfunction") false) (=> (= "lambda:getfunctionscalingconfig" "lambda:getfunction") false) (=> (= "lambda:getfunctionurlconfig" "lambda:getfunction") false) (=> (= "lambda:listfunctionsbycodesigningconfig" "lambda:listfunctions") false) (=> (= "lambda:updatefunctioncodesigningconfig" "lambda:updatefunctioncode") false) true)))
(check-sat)
