"""The edges: the command line, the Gradio app, reports, Colab: the only layer that prints, parses argv, names flags."""
