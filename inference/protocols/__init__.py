"""The wire protocols the server speaks, each in one module with its body parser and its handlers.

- `sagemaker`: SageMaker's serving contract: `GET /ping`, `POST /invocations` (JSON or JSON lines)
  and `GET /execution-parameters` for batch transform.
- `oip`: the Open Inference Protocol v2 (KServe, Triton): health, metadata and `infer` under `/v2`.

Both parse their envelope into the typed queries of inference/queries.py and leave the answering to
the app (inference/app.py); each declares its routes for the one route table (inference/routes.py).
"""
