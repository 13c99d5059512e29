"""A macro over native rules: uppercase a file with a genrule."""

def uppercase(name, src, visibility = None):
    native.genrule(
        name = name,
        srcs = [src],
        outs = [name + ".txt"],
        cmd = "tr '[:lower:]' '[:upper:]' < $< > $@",
        message = "Uppercasing",
        visibility = visibility,
    )
