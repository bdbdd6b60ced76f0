"""Table of prof.sh's ncu CSVs: python3 prof_table.py FOLDER NAME..."""
import collections, csv, io, sys
folder = sys.argv[1]
for v in sys.argv[2:]:
    lines = open(f"{folder}/prof_{v}.csv").read().splitlines()
    start = [i for i, l in enumerate(lines) if l.startswith('"ID"')][0]
    kernels = collections.OrderedDict()
    for r in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        kernels.setdefault((r["ID"], r["Kernel Name"]), {})[r["Metric Name"]] = r["Metric Value"]
    for (_, name), m in kernels.items():
        f = lambda k: float(m[k].replace(",", ""))
        w = f("smsp__warps_launched.sum")
        print(f"{name}: {f('gpu__time_duration.sum')/1000:.2f} us, active {f('sm__cycles_active.avg'):.0f} of "
              f"{f('sm__cycles_elapsed.avg'):.0f} cycles, {f('smsp__inst_executed.sum')/w:.0f} instr/warp")
        stalls = sorted(((f(k), k.split('issue_stalled_')[1].split('_per_issue')[0]) for k in m if 'issue_stalled' in k),
                        reverse=True)
        print("   stalls/issue: " + ", ".join(f"{n} {x:.2f}" for x, n in stalls[:7]))
