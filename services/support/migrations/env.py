from services.support.models import Base
from shared.migrations import run_env
from shared.models import PlatformBase

run_env([Base.metadata, PlatformBase.metadata])
