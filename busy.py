import sys
from work import work
for line in sys.stdin:
    sys.stdout.write(work(line))
    sys.stdout.flush()
