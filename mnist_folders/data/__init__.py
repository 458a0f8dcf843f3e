"""Images in: IDX files and PNG export, class-per-folder trees, decoding, the input pipelines, the dataset check."""
