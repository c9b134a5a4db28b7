"""Evaluation of a trained checkpoint (`report.evaluate`): the teacher's impression metrics
(`teacher_eval`), full-catalogue retrieval against the world's ground truth (`retrieval_eval`,
`oracle_metrics`, `ranking`, on the `samples` disjoint across days), the serving knob's frontier
(`frontier`), the oracle-gate bound (`oracle_gate`), the teacher as a retriever
(`teacher_retrieval`, `teacher_section`), id collision rates (`id_collisions`); `records` and
`report_types` are the typed records a report is made of (JSON only at the file boundary).
"""
