"""The fan-out dispatcher: from the outbox rows an approval wrote to posts on every platform.

    release (broadcaster.outbox) ── deliveries, one per version x target [x recipient]
        │  same transaction as the approval that completed the quorum
        ▼
    claims      claim due rows in batches with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL),
                bump the try counter in the same statement, renew leases with the heartbeat
    lanes       one per target: concurrency, rate, circuit breaker, retry budget, pause
    sender      one delivery: reconcile what may have gone out, publish the parts (threads keep
                per-part receipts), retract for Update/Cancel; maps channel errors to outcomes
    recorder    results written back in batches; version completion; events for live boards
    dispatcher  the loop that ties them together (`run` until stopped, `drain` for tests)

Delivery states are in `states`. Control (pause, resume, requeue) and status reads are in
`control`; the HTTP API over them is broadcaster.api.delivery_routes.
"""
