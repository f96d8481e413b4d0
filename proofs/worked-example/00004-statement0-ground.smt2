; refiner proof obligation statement0-ground
; expected result: unsat (no string breaks the obligation)
(set-logic QF_S)
(set-info :smt-lib-version 2.6)
(set-info :status unsat)
(assert
 (not (and (=> (str.in_re "lambda:updatefunctioncodesigningconfig" (str.to_re "lambda:updatefunctioncode")) false))))
(check-sat)
