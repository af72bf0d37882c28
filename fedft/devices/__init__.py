"""Simulated devices: who is online when, how fast each trains and uploads, and how a
round closes on the resulting virtual clock (docs/cross-device.md).

`profiles`: each client's device (seeded distributions or a CSV), as arrays, so a
population of 60,000 costs a few MB. `clock`: pure functions from a profile and a task
(bytes, examples) to seconds and availability. `deadline`: synchronous rounds with
over-selection and a deadline (Bonawitz et al. 2019). `fedbuff`: asynchronous buffered
aggregation (Nguyen et al. 2022). Both schedules depend on the seed and the profiles,
never on what the clients learn, so a run replays (and resumes) the same schedule.
"""
