"""Measuring the models: label the test set in shards, check the exported models agree, aggregate the report,
write Kaggle submissions."""
