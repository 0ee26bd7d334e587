"""``zoo serve``: a trained model behind HTTP.

FastAPI on uvicorn (``server``) serves the routes of ``app``: ``POST /predict`` answers in the
shape of ``zoo predict --json`` (the run's task's output, ``zoo.labeling.outputs``), with
request bodies decoded off the event loop (``decoding``) and concurrent requests' images run as
one forward pass (``batching``) on the model's one inference path
(``zoo.models.inference``, with the engine ``zoo.models.engines`` chose); ``/metrics`` is
Prometheus text (``metrics``); ``/`` is a self-contained web page (``templates/page.html``).
The settings are checked once, at the command line's boundary (``options``).
"""
