; refiner proof obligation statement0-ground
; expected result: unsat (no string breaks the obligation)
(set-logic QF_S)
(set-info :smt-lib-version 2.6)
(set-info :status unsat)
(assert
 (let (($x20 (and (=> (str.in_re "lambda:getfunctioncodesigningconfig" (str.to_re "lambda:getfunction")) false) (=> (str.in_re "lambda:getfunctionconcurrency" (str.to_re "lambda:getfunction")) false) (=> (str.in_re "lambda:getfunctionconfiguration" (str.to_re "lambda:getfunction")) false) (=> (str.in_re "lambda:getfunctioneventinvokeconfig" (str.to_re "lambda:getfunction")) false) (=> (str.in_re "lambda:getfunctionrecursionconfig" (str.to_re "lambda:getfunction")) false) (=> (str.in_re "lambda:getfunctionscalingconfig" (str.to_re "lambda:getfunction")) false) (=> (str.in_re "lambda:getfunctionurlconfig" (str.to_re "lambda:getfunction")) false))))
(not $x20)))
(check-sat)
