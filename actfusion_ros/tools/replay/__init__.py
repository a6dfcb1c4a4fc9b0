"""``actfusion-replay BAG --checkpoint CKPT --out DIR``: evaluate the whole streaming pipeline on a rosbag.

``actfusion-replay BAG --params PARAMS.yaml --out DIR`` replays the deployment a node params file describes:
the pipeline is assembled by :func:`actfusion_ros.builder.build_anticipator`, as ``actfusion_node`` does
(without ``--params``, the flags stand for the node's parameters, with the extractor and feature rate
the checkpoint records). The bag's frames drive the same
:class:`~actfusion_ros.stream.StreamingAnticipator` the node uses, on
the bag's own timestamps and as fast as the machine allows (no DDS): ticks happen every ``1/tick_rate``
seconds of *camera* time. Ground truth comes from a label topic (``std_msgs/String`` change events) or
a per-frame label file. The report has

* TAS metrics of the final observation (its online segmentation against the labels at the feature
  stamps), from :mod:`actfusion_training.metrics`;
* anticipation metrics of every tick's forecast against what really happened next: MoC (pooled per
  ground-truth class) over the whole forecast window and accuracy at fixed look-ahead times; the same for
  the label-only baselines of :mod:`actfusion_training.baselines` made at each tick from the tick's observed
  (online-segmented) labels over the same future frames: "repeat the last observed action" always, and the
  segment grammars of order 1 and 2 when training labels are given (``--baseline-labels``; durations in
  feature frames, the r*N^O protocol, since a stream's length is unknown);
* the next action after the current one (:mod:`actfusion_model.consensus`): every tick's next-action distribution
  scored against what really followed (top-1/top-3, Brier, ECE, reliability; :mod:`actfusion_training.prob_metrics`),
  and the distributions of the ticks drawn on the timeline, e.g. ``stir 70% @ 12.8s (12.1-13.6)``. Each
  tick keeps its K sampled futures (``--num-samples``; :attr:`TickRecord.future_sample_labels`), so the
  distribution is the K samples' (for K = 1 the one forecast's, probability 1);
* per-stage latency (p50/p95): image decoding, per-frame push (features at sampled frames), forecast;
* a timeline PNG: ground truth, the live current action published at each tick, and the forecasts of
  several ticks, titled with the headline metrics;
* the per-frame final segmentation and every tick's forecast (``frames.csv``, ``segmentation.csv``,
  ``forecasts.jsonl``, see :mod:`actfusion_ros.tools.replay.series`), to re-score or plot the replay.

With ``--record OUT.mcap`` the replay is also written as one MCAP file to scrub through in Foxglove: the
bag's camera messages and, at every tick, what ``actfusion_node`` would publish (forecast, current action,
timeline image) plus the class map (:mod:`actfusion_ros.tools.replay.recording`).

JSON (``replay.json``) and markdown (``replay.md``) are written beside the PNG, atomically. Inputs (the
output folder, the bag and its topics, the label file, the checkpoint) are checked before the bag is
replayed; every user error exits 2 with one ``actfusion-replay: error: ...`` line.

The package, one module per concept (each imports only those above it in this list):

=================  ===============================================================================
module             what it holds
=================  ===============================================================================
``records``        the replay's types: :class:`GroundTruth`, :class:`TickRecord`, :class:`ReplayReport`,
                   :class:`AnticipationScore`, :class:`ReplayError`; which ticks are scored and drawn
``scoring``        TAS of the final observation, MoC and look-ahead accuracy of the model and the
                   label-only baselines (and their fitting), the ticks' next-action distributions scored
``series``         ``frames.csv``, ``segmentation.csv``, ``forecasts.jsonl``: written and read back
``figure``         the timeline figure (matplotlib) and its PNG
``report``         ``replay.json`` / ``replay.md``: the next-action section, the headline, the latency table
``recording``      ``--record``: the replay as one MCAP file (needs rclpy and actfusion_msgs)
``inputs``         the checks of the output folder, the bag's topics and the label file
``driver``         :func:`drive` (frames through the stream, ticks on camera time) and :func:`replay`
``cli``            ``actfusion-replay``: its arguments, their checks, the node settings they stand for
=================  ===============================================================================

``python -m actfusion_ros.tools.replay`` is the command too. This file imports nothing, so importing one module
of the package does not import the others.
"""
