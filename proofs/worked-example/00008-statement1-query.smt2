; refiner proof obligation statement1-query
; expected result: unsat (no string breaks the obligation)
(set-logic QF_S)
(set-info :smt-lib-version 2.6)
(set-info :status unsat)
(declare-fun action () String)
(assert
 (let ((?x130 (re.* re.allchar)))
(let ((?x89 (re.++ (str.to_re "s3:get") ?x130)))
(let ((?x53 (re.comp ?x89)))
(let ((?x218 (re.++ (str.to_re "s3:getobject") ?x130)))
(str.in_re action (re.inter ?x218 ?x53)))))))
(check-sat)
