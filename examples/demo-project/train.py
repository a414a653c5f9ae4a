"""Train an ElasticNet on scikit-learn's diabetes data and track it with MLflow.

On a compute node the mantik job wrapper sets MLFLOW_TRACKING_URI, MLFLOW_RUN_ID and the
token, so ``mlflow.start_run()`` continues the run that ``submit_run`` created.
"""

import argparse

import mlflow
import mlflow.sklearn
from sklearn.datasets import load_diabetes
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import train_test_split


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--l1-ratio", type=float, default=0.1)
    args = parser.parse_args()

    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=42)
    with mlflow.start_run():
        model = ElasticNet(alpha=args.alpha, l1_ratio=args.l1_ratio, random_state=42)
        model.fit(x_train, y_train)
        predicted = model.predict(x_test)
        # The entry point's parameters are logged by mantik at submission (as `mlflow run`
        # does); log only what the platform cannot know.
        mlflow.log_param("model_type", "ElasticNet")
        mlflow.log_metric("rmse", mean_squared_error(y_test, predicted) ** 0.5)
        mlflow.log_metric("r2", r2_score(y_test, predicted))
        mlflow.sklearn.log_model(model, name="model")
        print(f"trained ElasticNet(alpha={args.alpha}, l1_ratio={args.l1_ratio})")


if __name__ == "__main__":
    main()
