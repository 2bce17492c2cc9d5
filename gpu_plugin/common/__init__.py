"""What several of the plugin family's programs share: Go-style flag parsing (:mod:`.goflags`),
klog's flags (:mod:`.klog`), the command-line error and exit codes (:mod:`.errors`) and upstream's
label-value splitting (:mod:`.label_split`).  Kept small on purpose: program logic lives in each
program's package.
"""
