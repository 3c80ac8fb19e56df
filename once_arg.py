import sys
from work import work
print(work(sys.argv[1]), end="\\n")
