from services.sales.models import Base
from shared.customer_view import CustomerViewBase
from shared.migrations import run_env
from shared.models import PlatformBase

run_env([Base.metadata, CustomerViewBase.metadata, PlatformBase.metadata])
