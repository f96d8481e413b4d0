; refiner proof obligation statement1-ground
; expected result: unsat (no string breaks the obligation)
(set-logic QF_S)
(set-info :smt-lib-version 2.6)
(set-info :status unsat)
(assert
 (let ((?x130 (re.* re.allchar)))
(let ((?x89 (re.++ (str.to_re "s3:get") ?x130)))
(let (($x118 (str.in_re "s3:getjobtagging" ?x89)))
(let (($x115 (and (or (str.in_re "s3:getaccountpublicaccessblock" ?x89)) (or (str.in_re "s3:getbucketabac" ?x89)) (or (str.in_re "s3:getbucketmetadatatableconfiguration" ?x89)) (or (str.in_re "s3:getdataaccess" ?x89)) (or $x118))))
(not $x115))))))
(check-sat)
