"""What a person runs: the `mnist-transfer` command (predict, serve, check-params, kaggle-csvs) and the web app.
Nothing outside this package imports it."""
