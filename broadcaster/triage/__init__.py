"""The triage queue: what the public sends back, most urgent first, with the reasons.

    webhooks (api/hook_routes) ─┐
    polling  (polling)          ├─ normalise ─▶ ingest: queue ─▶ pipeline: dedupe, cluster,
    public form (web_form)     ─┘   (one report     (bounded,     score, store (one transaction
                                     shape)          in memory)    per batch)
                                                                         │
      live queue (live, SSE) ◀── every change ──────────────────────────┘
      responders (service: states, replies; escalation; rumour; retention; export)

Under `serve` the pipeline runs in a process of its own (`writer_process`), so a flood of
reports uses a second core. `runtime.install` wires it into the web application. Rules
(lexicon, weights, gazetteer, replies) come from config/triage.toml (`rules`).
"""
