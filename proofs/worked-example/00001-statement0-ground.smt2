; refiner proof obligation statement0-ground
; expected result: unsat (no string breaks the obligation)
(set-logic QF_S)
(set-info :smt-lib-version 2.6)
(set-info :status unsat)
(assert
 (let (($x39 (and (=> (str.in_re "lambda:deletefunctioncodesigningconfig" (str.to_re "lambda:deletefunction")) false) (=> (str.in_re "lambda:deletefunctionconcurrency" (str.to_re "lambda:deletefunction")) false) (=> (str.in_re "lambda:deletefunctioneventinvokeconfig" (str.to_re "lambda:deletefunction")) false) (=> (str.in_re "lambda:deletefunctionurlconfig" (str.to_re "lambda:deletefunction")) false))))
(not $x39)))
(check-sat)
